"""Conversion figures a shop can trust (issue 21, part 1) and the report API (part 2), on
SQLite and PostgreSQL: forged clicks, repeated orders and events on products an answer did
not show do not move the figures; the shop's own server calls are kept apart from widget
traffic; the report is the same in JSON, CSV and on the command line."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid

import pytest

from formwise.service.cli.main import main
from formwise.service.shops import keys as shops
from formwise.service.store import queries as storage

ORIGIN = "https://reports.example"
CATALOG = [
    {"sku": "GLY-60", "name": "Glycinate 60", "form": "glycinate", "elemental_mg_per_unit": 100, "units_per_pack": 60,
     "price": 12.5, "currency": "EUR", "url": f"{ORIGIN}/gly", "image_url": f"{ORIGIN}/gly.png",
     "cart_url": f"{ORIGIN}/cart/add/gly"},
    {"sku": "CIT-60", "name": "Citrate 60", "form": "citrate", "elemental_mg_per_unit": 100, "units_per_pack": 60,
     "price": 9, "currency": "EUR", "url": f"{ORIGIN}/cit"},
    {"sku": "OXI-60", "name": "Oxide 60\x1b[2J\r\nFAKE", "form": "oxide", "elemental_mg_per_unit": 250,
     "units_per_pack": 60, "price": 5, "currency": "EUR", "url": f"{ORIGIN}/oxi"},
    {"sku": "=HYPERLINK()", "name": "Malate 60", "form": "malate", "elemental_mg_per_unit": 100,
     "units_per_pack": 60, "price": 11, "currency": "EUR", "url": f"{ORIGIN}/mal"},
]
PROFILE = {"age": 40, "goals": ["sleep"]}


@pytest.fixture()
def shop(db_app):
    """A shop of its own for each test: the figures below count everything the shop has."""
    with db_app.app_context():
        created = shops.create_shop(f"reports-{uuid.uuid4().hex[:8]}", [ORIGIN])
    response = db_app.test_client().put("/v1/catalog", json={"products": CATALOG}, headers=server(created))
    assert response.status_code == 200, response.data
    return created


def browser(shop) -> dict:
    return {"X-API-Key": shop["publishable_key"], "Origin": ORIGIN}


def server(shop) -> dict:
    return {"X-API-Key": shop["secret_key"]}


def answer(client, headers, limit: int = 3) -> tuple[str, list[str]]:
    """A new answer: its id and the skus it shows."""
    response = client.post("/v1/recommendations", json={"profile": PROFILE, "options": {"limit": limit}},
                           headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    return body["recommendation_id"], [p["sku"] for item in body["recommendations"] for p in item["products"]]


def event(client, headers, kind, rid, sku, **fields):
    return client.post("/v1/events", json={"type": kind, "recommendation_id": rid, "sku": sku, **fields},
                       headers=headers)


def report(client, shop, **query) -> dict:
    response = client.get("/v1/reports/conversions", query_string=query, headers=server(shop))
    assert response.status_code == 200, response.data
    return response.get_json()


def test_a_product_shown_with_an_answer_carries_its_image_and_cart_link(db_app, shop):
    response = db_app.test_client().post("/v1/recommendations", json={"profile": PROFILE, "options": {"limit": 10}},
                                         headers=browser(shop))
    offers = {p["sku"]: p for item in response.get_json()["recommendations"] for p in item["products"]}
    assert offers["GLY-60"]["image_url"] == f"{ORIGIN}/gly.png"
    assert offers["GLY-60"]["cart_url"] == f"{ORIGIN}/cart/add/gly"
    assert offers["CIT-60"]["image_url"] is None and offers["CIT-60"]["cart_url"] is None


def test_forged_clicks_repeated_orders_and_unshown_products_do_not_move_the_figures(db_app, shop):
    client = db_app.test_client()
    rid, shown = answer(client, browser(shop), limit=1)  # one form: the other skus are not shown
    assert len(shown) == 1
    sku = shown[0]
    unshown = next(item["sku"] for item in CATALOG if item["sku"] not in shown)
    visit = {"session_id": "visit-0001"}
    assert event(client, browser(shop), "view", rid, sku, **visit).status_code == 201
    assert event(client, browser(shop), "click", rid, sku, **visit).status_code == 201
    order = {"order_id": "A-1001", "quantity": 2, "revenue": 25.0, "currency": "EUR"}
    first = event(client, server(shop), "purchase", rid, sku, **order)
    assert first.status_code == 201 and first.get_json()["duplicate"] is False
    honest = report(client, shop)["widget"]["totals"]
    assert (honest["views"], honest["clicks"], honest["orders"], honest["units"]) == (1, 1, 1, 2)
    assert honest["revenue"] == {"EUR": "25.00"} and honest["click_rate"] == 1.0 and honest["conversion"] == 1.0

    # 20 more clicks from a script, each claiming a visit of its own, on the same answer
    for n in range(20):
        assert event(client, browser(shop), "click", rid, sku, session_id=f"forged-{n:04d}").status_code == 201
    # clicks and carts on a product nobody viewed in that visit
    for _ in range(5):
        other_rid, _ = answer(client, browser(shop), limit=1)
        event(client, browser(shop), "click", other_rid, sku)
        event(client, browser(shop), "add_to_cart", other_rid, sku)
    # the same order line sent again, even with other amounts
    again = event(client, server(shop), "purchase", rid, sku, order_id="A-1001", quantity=9, revenue=99.0,
                  currency="EUR")
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert again.get_json()["event_id"] == first.get_json()["event_id"]
    # a product the answer did not show: stored, answered as unattributed, not credited
    stray = event(client, browser(shop), "view", rid, unshown, **visit)
    assert stray.status_code == 201 and stray.get_json()["attributed"] is False
    stray_order = event(client, server(shop), "purchase", rid, unshown, order_id="A-1002", revenue=5.0,
                        currency="EUR")
    assert stray_order.get_json()["attributed"] is False

    after = report(client, shop)
    totals = after["widget"]["totals"]
    assert {key: totals[key] for key in ("views", "clicks", "add_to_cart", "orders", "units", "revenue")} == {
        key: honest[key] for key in ("views", "clicks", "add_to_cart", "orders", "units", "revenue")}
    assert (after["unattributed"]["views"], after["unattributed"]["orders"]) == (1, 1)
    assert after["unattributed"]["revenue"] == {"EUR": "5.00"}


def test_the_shops_own_server_calls_are_kept_apart_from_widget_traffic(db_app, shop):
    client = db_app.test_client()
    for _ in range(3):
        rid, shown = answer(client, browser(shop))
        event(client, browser(shop), "view", rid, shown[0])
    for _ in range(5):  # the shop testing its integration with the secret key
        rid, shown = answer(client, server(shop))
        event(client, server(shop), "view", rid, shown[0])
        event(client, server(shop), "click", rid, shown[0])
    body = report(client, shop)
    assert (body["widget"]["answers"], body["widget"]["totals"]["views"], body["widget"]["totals"]["clicks"]) == (
        3, 3, 0)
    assert (body["server"]["answers"], body["server"]["totals"]["views"], body["server"]["totals"]["clicks"]) == (
        5, 5, 5)


def test_views_count_once_per_visit_and_product(db_app, shop):
    client = db_app.test_client()
    rid, shown = answer(client, browser(shop))
    for _ in range(4):  # the page rendered the same answer again (a locale change, a reload)
        event(client, browser(shop), "view", rid, shown[0], session_id="visit-0002")
    rid_again, shown_again = answer(client, browser(shop))  # without a token: the answer is the visit
    event(client, browser(shop), "view", rid_again, shown_again[0])
    event(client, browser(shop), "view", rid_again, shown_again[0])
    assert report(client, shop)["widget"]["totals"]["views"] == 2


def test_report_groups_by_form_product_and_day_and_reads_a_date_range(db_app, shop):
    client = db_app.test_client()
    rid, shown = answer(client, browser(shop), limit=10)
    by_sku = {item["sku"]: item for item in CATALOG}
    for sku in shown:
        event(client, browser(shop), "view", rid, sku, session_id="visit-0003")
    event(client, browser(shop), "click", rid, shown[0], session_id="visit-0003")
    event(client, server(shop), "purchase", rid, shown[0], order_id="B-1", revenue=12.5, currency="EUR")

    by_form = report(client, shop, group="form")
    assert [row["form"] for row in by_form["widget"]["rows"]] == sorted({by_sku[sku]["form"] for sku in shown})
    top = next(row for row in by_form["widget"]["rows"] if row["form"] == by_sku[shown[0]]["form"])
    assert (top["views"], top["clicks"], top["orders"], top["revenue"]) == (1, 1, 1, {"EUR": "12.50"})

    by_product = report(client, shop, group="product")
    assert {row["sku"] for row in by_product["widget"]["rows"]} == set(shown)
    assert all(row["name"] == by_sku[row["sku"]]["name"] for row in by_product["widget"]["rows"])

    today = dt.datetime.now(dt.UTC).date()
    by_day = report(client, shop, group="day", **{"from": today.isoformat(), "to": today.isoformat()})
    assert [(row["day"], row["answers"], row["views"]) for row in by_day["widget"]["rows"]] == [
        (today.isoformat(), 1, len(shown))]
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    before = report(client, shop, group="day", to=yesterday)
    assert before["widget"]["answers"] == 0 and before["widget"]["rows"] == []
    assert before["to"] == yesterday


def test_report_as_csv_with_a_revenue_column_per_currency_and_no_formula_cells(db_app, shop):
    client = db_app.test_client()
    rid, shown = answer(client, browser(shop), limit=10)
    for sku in shown:
        event(client, browser(shop), "view", rid, sku)
    event(client, server(shop), "purchase", rid, shown[0], order_id="C-1", revenue=10.0, currency="EUR")
    event(client, server(shop), "purchase", rid, shown[0], order_id="C-2", revenue=3.5, currency="USD")
    response = client.get("/v1/reports/conversions?group=product&format=csv", headers=server(shop))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    first = next(row for row in rows if row["sku"] == shown[0])
    assert (first["channel"], first["orders"], first["revenue_EUR"], first["revenue_USD"]) == (
        "widget", "2", "10.00", "3.50")
    assert all(not row["sku"].startswith("=") for row in rows)  # "=HYPERLINK()" is written as text
    by_accept = client.get("/v1/reports/conversions", headers={**server(shop), "Accept": "text/csv"})
    assert by_accept.mimetype == "text/csv"


@pytest.mark.parametrize(("query", "field"), [
    ({"group": "week"}, "group"), ({"from": "2026-13-01"}, "from"), ({"format": "xml"}, "format"),
    ({"from": "2026-12-07", "to": "2026-12-01"}, "to"), ({"shop": "other"}, "shop"),
])
def test_report_queries_that_cannot_be_read_are_a_422_naming_the_field(db_app, shop, query, field):
    response = db_app.test_client().get("/v1/reports/conversions", query_string=query, headers=server(shop))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert field in {error["field"] for error in response.get_json()["errors"]}


def test_the_report_needs_the_secret_key(db_app, shop):
    client = db_app.test_client()
    assert client.get("/v1/reports/conversions").status_code == 401
    assert client.get("/v1/reports/conversions", headers=browser(shop)).status_code == 403


@pytest.mark.parametrize(("fields", "field"), [
    ({"type": "purchase"}, "order_id"),
    ({"type": "purchase", "order_id": "X", "revenue": 10.0}, "currency"),
    ({"type": "purchase", "order_id": "X", "revenue": 10.005, "currency": "EUR"}, "revenue"),
    ({"type": "purchase", "order_id": "X", "quantity": 0}, "quantity"),
    ({"type": "click", "order_id": "X"}, "order_id"),
    ({"type": "view", "session_id": "short"}, "session_id"),
])
def test_event_fields_that_do_not_fit_the_type_are_a_422_naming_the_field(db_app, shop, fields, field):
    client = db_app.test_client()
    rid, shown = answer(client, browser(shop))
    response = client.post("/v1/events", json={"recommendation_id": rid, "sku": shown[0], **fields},
                           headers=server(shop))
    assert response.status_code == 422, response.data
    assert field in {error["field"] for error in response.get_json()["errors"]}


def test_the_command_prints_the_same_figures(db_app, shop, database_url, runner):
    client = db_app.test_client()
    rid, shown = answer(client, browser(shop), limit=10)
    oxide = "OXI-60" in shown
    for sku in shown:
        event(client, browser(shop), "view", rid, sku, session_id="visit-0004")
    event(client, browser(shop), "click", rid, shown[0], session_id="visit-0004")
    with db_app.app_context():
        name = next(row["name"] for row in storage.list_shops() if row["shop_id"] == shop["shop_id"])
    result = runner.invoke(main, ["shops", "report", name, "--group", "product", "--json"],
                           env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == report(client, shop, group="product")
    text = runner.invoke(main, ["shops", "report", name, "--group", "product"],
                         env={"DATABASE_URL": database_url}).output
    assert "the widget (publishable key): 1 answers" in text and "the shop's server (secret key): 0 answers" in text
    if oxide:  # a product name cannot move the cursor, clear the screen or start a line of its own
        assert "\x1b" not in text and "\r" not in text and "\nFAKE" not in text
