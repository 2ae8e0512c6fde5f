"""POST /v1/handout: the body of /v1/recommendations, answered as a printable HTML page for
the patient: the ranked forms with how much to take, when to take them around their other
medicines, the caveats in plain language, and when to see a doctor. English or German, like
every answer; every word on the page comes from data/ (the answer, texts.csv, ui.csv)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import marshmallow as ma
import orjson
from cryptography.fernet import Fernet, InvalidToken
from flask import Response, abort, current_app, render_template
from flask.views import MethodView
from markupsafe import Markup, escape

from formwise.models.knowledge import vocabulary as vocab
from formwise.models.knowledge.ui_texts import ui_text
from formwise.service.api.errors import problem
from formwise.service.api.locale_format import format_date, format_number, format_quarters
from formwise.service.api.parsing import Blueprint
from formwise.service.api.recommendations import recommend
from formwise.service.api.schemas import HandoutRequestSchema, ProfileSchema
from formwise.service.settings import setting

blp = Blueprint("handout", __name__, url_prefix="/v1", template_folder="templates",
                description="A printable page for the patient.")

# The patient-facing texts the page needs from the knowledge base's texts.csv.
HANDOUT_TEXT_KEYS = ("how_to_take", "how_to_take_child", "see_clinician")
# How long a handout link on a CDS card opens the page (a setting; this is the default).


def knowledge_text(key: str, locale: str) -> str:
    texts = current_app.extensions["formwise"].knowledge_base.texts[key]
    return texts.get(locale) or texts[vocab.DEFAULT_LOCALE]


def render_handout(profile: dict, options: dict, details: dict | None = None) -> Response:
    """The handout page for one validated profile, the request's options and the optional
    details printed in its header (patient name, date, pharmacy, pharmacist)."""
    (answer,), locale = recommend([profile], {**options, "explain": True})
    kb = current_app.extensions["formwise"].knowledge_base
    forms = {form.id: form for form in kb.forms}
    details = details or {}
    young = profile["age"] < kb.rules["handout"]["plain_words_below_age"]
    amounts = {item["form"]: list(_amount_lines(item, forms[item["form"]], locale,
                                                kb.rules["handout"]["level_teaspoon_g"]))
               for item in answer["recommendations"]}
    page = render_template(
        "handout.html", answer=answer, locale=locale, amounts=amounts,
        t=lambda key, **values: ui_text(key, locale, **values),
        number=lambda value: format_number(value, locale),
        how_to_take=knowledge_text("how_to_take_child" if young else "how_to_take", locale),
        see_clinician=knowledge_text("see_clinician", locale),
        timeline=_timeline_svg(answer["timing"], locale) if answer.get("timing") else None,
        patient_name=details.get("patient_name"), pharmacy=details.get("pharmacy"),
        pharmacist=details.get("pharmacist"),
        date=format_date(details.get("date") or dt.date.today(), locale),
    )
    return Response(page, mimetype="text/html", headers={"Content-Language": locale})


def _amount_lines(recommendation: dict, form, locale: str, teaspoon_g: float):
    """(css class, text) per typical product: the daily amount in the form's own units,
    tablets or capsules counted, a liquid in mL, a powder in g and level teaspoons."""
    size = form.unit_size
    for units in recommendation["dose"]["units_per_day"]:
        values = {"unit": format_number(units["unit_elemental_mg"], locale, 1), "size": format_number(size, locale)}
        if not units["fits_dose"]:
            yield "warning", ui_text(f"handout.too_large.{form.unit_kind}", locale, **values)
            continue
        low, high = units["min"] * size, units["max"] * size
        amount = format_number(low, locale) if low == high else ui_text(
            "handout.range", locale, min=format_number(low, locale), max=format_number(high, locale))
        if form.unit_kind == "powder":
            spoons_low, spoons_high = (format_quarters(grams / teaspoon_g, locale) for grams in (low, high))
            values["teaspoons"] = spoons_low if spoons_low == spoons_high else ui_text(
                "handout.range", locale, min=spoons_low, max=spoons_high)
        yield "", ui_text(f"handout.units.{form.unit_kind}", locale, amount=amount, **values)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _timeline_svg(timing: dict, locale: str) -> Markup:
    """The day as a line from 0 to 24 h: waking hours, the windows in which magnesium keeps
    its distance from the other medicines, those medicines' times above the line and the
    suggested magnesium times below it. Inline SVG: it prints, and needs nothing loaded."""
    width, left, right, axis = 680, 20, 20, 62
    span = width - left - right

    def x(clock: str) -> float:
        return round(left + span * min(_minutes(clock), 1440) / 1440, 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} 112" role="img" '
             f'aria-label="{escape(ui_text("handout.timeline_label", locale))}">']
    waking = timing["waking_hours"]
    parts.append(f'<rect x="{x(waking["start"])}" y="{axis - 10}" width="{x(waking["end"]) - x(waking["start"])}" '
                 f'height="20" fill="#eee" stroke="#999"/>')
    for window in timing["allowed_windows"]:
        parts.append(f'<rect x="{x(window["start"])}" y="{axis - 10}" width="{x(window["end"]) - x(window["start"])}"'
                     f' height="20" fill="#bfe3bf" stroke="#2e7d32"/>')
    parts.append(f'<line x1="{left}" y1="{axis}" x2="{width - right}" y2="{axis}" stroke="#333"/>')
    for hour in range(0, 25, 3):
        position = round(left + span * hour / 24, 1)
        parts.append(f'<line x1="{position}" y1="{axis + 10}" x2="{position}" y2="{axis + 14}" stroke="#333"/>'
                     f'<text x="{position}" y="{axis + 26}" font-size="10" text-anchor="middle">{hour:02d}:00</text>')
    row = 0
    for medicine in timing["medications"]:
        for clock in medicine["times"]:
            parts.append(f'<line x1="{x(clock)}" y1="{axis - 12}" x2="{x(clock)}" y2="{axis - 24 - 11 * (row % 2)}" '
                         f'stroke="#000" stroke-width="2"/><text x="{x(clock)}" y="{axis - 27 - 11 * (row % 2)}" '
                         f'font-size="10" text-anchor="middle">{escape(medicine["medication"])} {clock}</text>')
            row += 1
    for clock in timing["suggested_times"]:
        parts.append(f'<circle cx="{x(clock)}" cy="{axis}" r="6" fill="#1b5e20"/>'
                     f'<text x="{x(clock)}" y="{axis + 40}" font-size="11" font-weight="bold" text-anchor="middle">'
                     f'{escape(ui_text("handout.timeline_magnesium", locale))} {clock}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@blp.route("/handout")
class Handout(MethodView):
    @blp.arguments(HandoutRequestSchema())
    @blp.alt_response(200, success=True, content_type="text/html",
                      description="A self-contained HTML page with a print stylesheet.")
    def post(self, body):
        """A printable page for the patient, from the same body as /v1/recommendations.

        The page lists the ranked forms with the daily amount in mg and in the form's own
        units (tablets or capsules counted, a liquid in mL, a powder in g and level
        teaspoons), how and when to take magnesium (the timing plan as a day line when
        options.schedule is given), the caveats and interactions in plain language, and when
        to see a doctor; ``handout`` adds the patient's name, the date, the pharmacy and the
        pharmacist to its header. options.locale picks English or German (numbers and dates
        included); Content-Language says which was used. It prints on at most two A4 pages
        for a typical answer."""
        return render_handout(body["profile"], body["options"], body.get("handout"))


# ---- links to a patient's handout (on CDS cards) ------------------------------------------


def _link_cipher() -> Fernet:
    """The key of handout links: FORMWISE_SECRET_KEY, or a secret the service made for itself
    once in its database (shared by every worker)."""
    from formwise.service.store import queries as storage

    secret = setting("FORMWISE_SECRET_KEY") or storage.app_secret("handout-links")
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"handout-links:{secret}".encode()).digest()))


def handout_link(profile: dict, locale: str) -> str:
    """An absolute link that opens this profile's handout for FORMWISE_HANDOUT_LINK_HOURS. The profile
    travels encrypted in the link (the service stores no profile): the URL shows nothing of
    it, and request logs record only the endpoint."""
    token = _link_cipher().encrypt(orjson.dumps({"profile": profile, "locale": locale})).decode()
    from formwise.service.clinical.auth import public_base_url  # the card's base URL, not the caller's Host header

    return f"{public_base_url()}v1/handout/{token}"


@blp.route("/handout/<string:token>")
class HandoutLink(MethodView):
    @blp.alt_response(200, success=True, content_type="text/html", description="The handout page.")
    def get(self, token):
        """The handout a CDS card links to; the link expires after a day."""
        hours = setting("FORMWISE_HANDOUT_LINK_HOURS")
        try:
            content = orjson.loads(_link_cipher().decrypt(token.encode(), ttl=hours * 3600))
            profile = ProfileSchema().load(content["profile"])
        except (InvalidToken, ValueError, KeyError, TypeError, ma.ValidationError):
            abort(problem(404, "Not Found", "This handout link is unknown or has expired: open the card again.",
                          slug="handout-link-expired"))
        return render_handout(profile, {"limit": 3, "locale": content.get("locale", vocab.DEFAULT_LOCALE)})
