"""GET /v1/reports/conversions: a shop's conversion figures over a date range, grouped by
form, product or day, as JSON or CSV (the secret key only: the figures are the shop's
business).

Widget traffic (answers asked for by the shop's pages with the publishable key, and the
events on them) and server traffic (answers asked for with the secret key: the shop's own
calls and tests) are reported apart, never summed. Events on a product the answer did not
show are in ``unattributed`` only. What counts once (a visit's view of a product, an
order's line) is decided in formwise.service.store.attribution."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from marshmallow import fields, validate

from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response
from formwise.service.shops.keys import SHOP_KEY_SECURITY, current_shop, require_shop
from formwise.service.store import attribution, experiments

blp = Blueprint("reports", __name__, url_prefix="/v1", description="A shop's conversion figures (its secret key).")
FORMATS = ("json", "csv")
COUNTED = ("views", "clicks", "add_to_cart", "orders", "units")
EVENT_FIGURE = {"view": "views", "click": "clicks", "add_to_cart": "add_to_cart", "purchase": "orders"}
GROUP_KEYS = {"form": ("form",), "product": ("sku", "name", "form"), "day": ("day",)}


class ReportQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    from_ = fields.Date(data_key="from", metadata={"description": "First day (UTC, inclusive), YYYY-MM-DD."})
    to = fields.Date(metadata={"description": "Last day (UTC, inclusive), YYYY-MM-DD."})
    group = fields.String(load_default="form", validate=validate.OneOf(
        attribution.GROUPS, error="Must be one of: " + ", ".join(attribution.GROUPS) + "."))
    format = fields.String(load_default=None, validate=validate.OneOf(FORMATS, error="Must be one of: json, csv."),
                           metadata={"description": "Default: the Accept header, else json."})

    @ma.validates_schema
    def _range(self, data, **kwargs):
        if "from_" in data and "to" in data and data["from_"] > data["to"]:
            raise ma.ValidationError("Must not be before 'from'.", "to")


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _empty() -> dict:
    return {**dict.fromkeys(COUNTED, 0), "revenue": {}}


def _add(figures: dict, event: dict) -> None:
    figures[EVENT_FIGURE[event["type"]]] += 1
    if event["type"] == "purchase":
        figures["units"] += event["quantity"]
        if event["revenue"] is not None:
            revenue = figures["revenue"]
            revenue[event["currency"]] = revenue.get(event["currency"], Decimal(0)) + event["revenue"]


def _finished(figures: dict) -> dict:
    views = figures["views"]
    revenue = {currency: f"{amount:.2f}" for currency, amount in sorted(figures["revenue"].items())}
    return {**figures, "revenue": revenue,
            "click_rate": _rate(figures["clicks"], views), "cart_rate": _rate(figures["add_to_cart"], views),
            "conversion": _rate(figures["orders"], views)}


def conversion_report(shop_id: int, start: dt.date | None = None, end: dt.date | None = None,
                      group: str = "form") -> dict:
    """The figures, per channel, grouped; rates per view (None when nothing was viewed)."""
    low = None if start is None else dt.datetime.combine(start, dt.time(), dt.UTC)
    high = None if end is None else dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    raw = attribution.conversion_rows(shop_id, low, high)
    names = raw["names"]
    channels = {}
    for channel in attribution.CHANNELS:
        answers = [row for row in raw["answers"] if (row["channel"] or "server") == channel]
        groups: dict[tuple, dict] = {}
        totals = _empty()
        for event in raw["events"]:
            if (event["channel"] or "server") != channel or not event["attributed"]:
                continue
            key = tuple({**event, "name": names.get(event["sku"], "")}[name] for name in GROUP_KEYS[group])
            _add(groups.setdefault(key, _empty()), event)
            _add(totals, event)
        if group == "day":  # every day with answers has a row, with its answers
            for row in answers:
                groups.setdefault((row["day"],), _empty())
        per_day = {}
        for row in answers:
            per_day[row["day"]] = per_day.get(row["day"], 0) + row["answers"]
        rows = []
        for key in sorted(groups):
            row = {**dict(zip(GROUP_KEYS[group], key, strict=True)), **_finished(groups[key])}
            if group == "day":
                row["answers"] = per_day.get(key[0], 0)
            rows.append(row)
        channels[channel] = {"answers": sum(per_day.values()), "totals": _finished(totals), "rows": rows}
    unattributed = _empty()
    for event in raw["events"]:
        if not event["attributed"]:
            _add(unattributed, event)
    return {"from": None if start is None else start.isoformat(), "to": None if end is None else end.isoformat(),
            "group": group, **channels, "unattributed": _finished(unattributed),
            "experiment": experiment_report(shop_id, low, high)}


def experiment_report(shop_id: int, low: dt.datetime | None, high: dt.datetime | None) -> dict | None:
    """The shop's current or last experiment: per arm its widget answers, the answers followed
    by an attributed purchase and that conversion; the difference ranking minus control with
    its 95 % confidence interval (Newcombe's hybrid score interval, statsmodels), or None for
    the interval while an arm has no answers. None when the shop never ran one."""
    settings = experiments.current_experiment(shop_id)
    if settings is None:
        return None
    counts = experiments.arm_counts(shop_id, settings["experiment_id"], low, high)
    arms = {arm: {**figures, "conversion": _rate(figures["converted"], figures["answers"])}
            for arm, figures in counts.items()}
    ranking, control = counts["ranking"], counts["control"]
    difference = None
    if ranking["answers"] and control["answers"]:
        from statsmodels.stats.proportion import confint_proportions_2indep  # only here: a heavy import

        low_ci, high_ci = confint_proportions_2indep(ranking["converted"], ranking["answers"], control["converted"],
                                                     control["answers"], method="newcomb", compare="diff",
                                                     alpha=0.05)
        difference = {"ranking_minus_control": round(ranking["converted"] / ranking["answers"]
                                                     - control["converted"] / control["answers"], 4),
                      "ci95": [round(float(low_ci), 4), round(float(high_ci), 4)], "method": "newcomb"}
    return {**settings, "arms": arms, "difference": difference}


def report_csv(report: dict) -> str:
    """One line per channel and group, the revenue in one column per currency."""
    group_keys = GROUP_KEYS[report["group"]]
    currencies = sorted({currency for channel in attribution.CHANNELS for row in report[channel]["rows"]
                         for currency in row["revenue"]})
    header = ["channel", *group_keys, *(["answers"] if report["group"] == "day" else []), *COUNTED,
              *(f"revenue_{currency}" for currency in currencies), "click_rate", "cart_rate", "conversion"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for channel in attribution.CHANNELS:
        for row in report[channel]["rows"]:
            writer.writerow([channel, *(_cell(row[key]) for key in header[1:1 + len(group_keys)]),
                             *([row["answers"]] if report["group"] == "day" else []), *(row[name] for name in COUNTED),
                             *(row["revenue"].get(currency, "0.00") for currency in currencies),
                             *("" if row[name] is None else row[name] for name in ("click_rate", "cart_rate",
                                                                                  "conversion"))])
    return buffer.getvalue()


def _cell(value) -> str:
    """A shop's own text (a product name) cannot start a spreadsheet formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@blp.route("/reports/conversions")
class Conversions(MethodView):
    @blp.doc(security=SHOP_KEY_SECURITY)
    @blp.arguments(ReportQuerySchema(), location="query", as_kwargs=True, unknown=ma.RAISE)
    @blp.alt_response(200, success=True, description="The figures, as JSON (an object per channel) or CSV.")
    @blp.alt_response(401, description="No key, or an unknown or revoked key.")
    @blp.alt_response(403, description="Not the shop's secret key.")
    def get(self, group, format=None, from_=None, to=None):
        """Views, clicks, add-to-carts, orders, units and revenue of the answers made with the
        shop's keys, from ``from`` to ``to`` (UTC days, both inclusive), grouped by form,
        product or day; widget traffic and the shop's own server calls apart; events on
        products the answer did not show only in ``unattributed``."""
        refused = require_shop("secret")
        if refused is not None:
            return refused
        shop = current_shop()
        report = {"shop": shop.name, **conversion_report(shop.id, from_, to, group)}
        wants_csv = format == "csv" or (format is None and request.accept_mimetypes.best_match(
            ["application/json", "text/csv"]) == "text/csv")
        if wants_csv:
            return Response(report_csv(report), mimetype="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="conversions-{group}.csv"'})
        return json_response(report)
