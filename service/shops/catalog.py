"""A shop's products, and their place in the answers made with that shop's key.

The shop uploads its catalog with its secret key (``PUT /v1/catalog``, CSV or JSON) or
with ``formwise catalog upload``. An answer to a request made with the shop's key then
lists, under each recommended form, the shop's products of that form with the units a day
that land in the answer's dose range and what a day costs. The engine decides the forms and
the dose; this module only does the arithmetic on its answer, after the safety masks: a
product is listed only under a form in ``recommendations``, so a product of an excluded
form never appears, and a product whose units cannot land inside the dose range (one unit
is already above its maximum, the upper limit for the age) is left out."""

from __future__ import annotations

import bisect
import csv
import io
import math
import threading
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import marshmallow as ma
import orjson
from flask import current_app, g, request
from flask.views import MethodView
from marshmallow import fields, validate

from formwise.models.knowledge.loading import default_knowledge_base, load_knowledge_base
from formwise.service.api import deadline
from formwise.service.api.errors import MAX_LISTED_ERRORS, flatten_messages, problem, problem_body, problem_from_body
from formwise.service.api.parsing import Blueprint
from formwise.service.api.responses import json_response
from formwise.service.api.schemas import StrictInteger, StrictNumber, StrictSchema
from formwise.service.settings import setting
from formwise.service.shops.keys import SHOP_KEY_SECURITY, current_shop, request_key, require_shop
from formwise.service.store import experiments
from formwise.service.store import queries as storage
from formwise.service.store.experiments import ExperimentSettings

blp = Blueprint("catalog", __name__, url_prefix="/v1", description="A shop's products (needs its secret key).")

CATALOG_PATH = "/v1/catalog"
NON_JSON_BODY_PATHS = (CATALOG_PATH,)  # CSV or JSON: upload_catalog checks the media type itself
CSV_MEDIA_TYPES = ("text/csv", "application/csv")
MAX_CATALOG_ROWS = 10_000
# The cheapest few products per recommended form: enough choice, a short answer.
MAX_PRODUCTS_PER_FORM = 5
CENT = Decimal("0.01")


def _form_ids() -> tuple[str, ...]:
    """The engine's forms; the command line has no engine and reads the knowledge base."""
    recommender = current_app.extensions.get("formwise")
    if recommender is not None:
        return recommender.knowledge_base.form_ids
    folder = setting("FORMWISE_KNOWLEDGE_BASE_DIR")
    return (load_knowledge_base(folder=folder) if folder else default_knowledge_base()).form_ids


HTTP_URL = [
    validate.Length(max=2000, error="Must be at most 2000 characters."),
    validate.URL(schemes={"http", "https"}, require_tld=False, error="Must be an http or https URL."),
]


class ProductSchema(StrictSchema):
    """One catalog row. CSV cells arrive as text and are read as numbers first."""

    sku = fields.String(required=True, validate=validate.Length(1, 100, error="Must be 1 to 100 characters."))
    name = fields.String(required=True, validate=validate.Length(1, 300, error="Must be 1 to 300 characters."))
    form = fields.String(required=True, metadata={"description": "A form id from GET /v1/forms."})
    elemental_mg_per_unit = StrictNumber(
        required=True, validate=validate.Range(min=0, max=2000, min_inclusive=False,
                                               error="Must be a number above 0 and at most 2000 (mg)."),
        metadata={"description": "Elemental magnesium in one tablet, capsule or scoop, in mg."})
    units_per_pack = StrictInteger(
        required=True, validate=validate.Range(1, 100_000, error="Must be a whole number from 1 to 100000."))
    price = StrictNumber(required=True, validate=validate.Range(0, 1_000_000, error="Must be from 0 to 1000000."),
                         metadata={"description": "The pack's price, at most 2 decimal places."})
    currency = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Z]{3}$", error="Must be a three-letter ISO 4217 code in capitals, such as EUR or USD."))
    url = fields.String(required=True, validate=HTTP_URL)
    image_url = fields.String(validate=HTTP_URL, metadata={"description": "Optional: a picture of the product."})
    cart_url = fields.String(validate=HTTP_URL, metadata={
        "description": "Optional: a link that puts the product in the cart (the widget's 'Add to cart')."})

    @ma.validates("form")
    def _known_form(self, value, **kwargs):
        if value not in _form_ids():
            raise ma.ValidationError("Must be one of: " + ", ".join(_form_ids()) + ".")

    @ma.validates("price")
    def _cents(self, value, **kwargs):
        if Decimal(str(value)) != Decimal(str(value)).quantize(CENT):
            raise ma.ValidationError("Must have at most 2 decimal places.")

    @ma.post_load
    def _price_as_decimal(self, data, **kwargs):
        data["price"] = Decimal(str(data["price"])).quantize(CENT)
        data["sku"], data["name"] = data["sku"].strip(), data["name"].strip()
        return data


product_schema = ProductSchema()
NUMERIC_COLUMNS = {"elemental_mg_per_unit": float, "units_per_pack": int, "price": float}


class CatalogError(ValueError):
    """The upload as a whole cannot be read (not one bad row): the message says why."""


def _number_from_cell(column: str, cell: str):
    """A CSV cell as the number its column holds; text that is not a number stays text, so
    the schema reports it; an empty cell is missing."""
    cell = cell.strip()
    if cell == "":
        return None
    try:
        return NUMERIC_COLUMNS[column](cell)
    except ValueError:
        if NUMERIC_COLUMNS[column] is int:
            try:
                return float(cell)  # "30.0" is a whole number, "30.5" is reported as not one
            except ValueError:
                return cell
        return cell


def rows_from_csv(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    columns = [column.strip() for column in columns]
    missing = [name for name in storage.PRODUCT_FIELDS if name not in columns]
    unknown = [name for name in columns if name not in storage.ALL_PRODUCT_FIELDS]
    if not columns:
        return []
    if missing or unknown:
        problems = ([f"missing columns: {', '.join(missing)}"] if missing else []) + (
            [f"unknown columns: {', '.join(unknown)}"] if unknown else [])
        raise CatalogError(f"The CSV header must name the columns {', '.join(storage.PRODUCT_FIELDS)}, and may "
                           f"name {', '.join(storage.OPTIONAL_PRODUCT_FIELDS)} ({'; '.join(problems)}).")
    reader.fieldnames = columns
    rows = []
    for record in reader:
        if None in record:
            rows.append({"__extra_cells__": True})
            continue
        row = {}
        for column in columns:
            cell = record.get(column)
            if cell is None:
                continue
            value = _number_from_cell(column, cell) if column in NUMERIC_COLUMNS else cell.strip()
            if value not in (None, ""):
                row[column] = value
        rows.append(row)
    return rows


def rows_from_json(data) -> list:
    if not isinstance(data, dict) or set(data) != {"products"} or not isinstance(data["products"], list):
        raise CatalogError('The JSON body must be {"products": [{"sku": ..., "name": ..., ...}, ...]}.')
    return data["products"]


def validate_rows(rows: list) -> tuple[list[dict], list[dict]]:
    """(good products, errors): each error names its 1-based row, the field and the reason.
    Row 1 is the first product (the line after a CSV header, the first item of a JSON list)."""
    good, errors, first_row_of_sku = [], [], {}
    for number, raw in enumerate(rows, start=1):
        if isinstance(raw, dict) and raw.get("__extra_cells__"):
            errors.append({"row": number, "field": "row", "message": "The row has more cells than the header."})
            continue
        if not isinstance(raw, dict):
            errors.append({"row": number, "field": "row", "message": "Must be an object with the product's fields."})
            continue
        try:
            product = product_schema.load(raw)
        except ma.ValidationError as error:
            errors.extend({"row": number, **item} for item in flatten_messages(error.messages))
            continue
        first_row = first_row_of_sku.get(product["sku"])
        if first_row is not None:
            errors.append({"row": number, "field": "sku",
                           "message": f"Duplicate sku '{product['sku']}' (first in row {first_row})."})
            continue
        first_row_of_sku[product["sku"]] = number
        good.append(product)
    return good, errors


def read_upload(body: bytes, media_type: str) -> list:
    if media_type in CSV_MEDIA_TYPES:
        try:
            return rows_from_csv(body.decode("utf-8-sig"))
        except UnicodeDecodeError as error:
            raise CatalogError(f"The CSV must be UTF-8 ({error.reason} at byte {error.start}).") from None
        except csv.Error as error:
            raise CatalogError(f"The CSV cannot be read: {error}.") from None
    try:
        return rows_from_json(orjson.loads(body))
    except orjson.JSONDecodeError as error:
        raise CatalogError(f"Invalid JSON: {error}") from None


def store_catalog(shop_id: int, rows: list, actor: str = "cli") -> dict:
    """Validates the rows and, unless every row is bad, makes the good ones the shop's whole
    catalog. An upload with no rows empties it. Returns the summary the API and CLI print."""
    if len(rows) > MAX_CATALOG_ROWS:
        raise CatalogError(f"At most {MAX_CATALOG_ROWS} products per upload (got {len(rows)}).")
    good, errors = validate_rows(rows)
    # rows_rejected counts them all; the list stops at MAX_LISTED_ERRORS, so a large file of
    # bad rows cannot make a reply many times its own size.
    summary = {"rows_in": len(rows), "products_stored": 0, "rows_rejected": len(rows) - len(good),
               "errors": errors[:MAX_LISTED_ERRORS]}
    if rows and not good:
        return summary
    summary["products_stored"] = storage.replace_catalog(shop_id, good)
    storage.record_audit("catalog.replaced", actor, str(shop_id),
                         {"rows_in": len(rows), "products_stored": summary["products_stored"],
                          "rows_rejected": summary["rows_rejected"]})
    return summary


class CatalogUploadSchema(ma.Schema):
    shop = fields.String(required=True)
    rows_in = fields.Integer(required=True)
    products_stored = fields.Integer(required=True)
    rows_rejected = fields.Integer(required=True)
    errors = fields.List(fields.Dict(), required=True, metadata={
        "description": "One entry per problem: {row, field, message}; row 1 is the first product. At most "
                       "the first 100 problems are listed; rows_rejected counts every rejected row."})


class CatalogListSchema(ma.Schema):
    shop = fields.String(required=True)
    products = fields.List(fields.Nested(ProductSchema), required=True)


CSV_EXAMPLE = ("sku,name,form,elemental_mg_per_unit,units_per_pack,price,currency,url\n"
               "MG-GLY-120,Magnesium glycinate 120 capsules,glycinate,100,120,19.90,EUR,https://shop.example/gly\n")


@blp.route("/catalog")
class Catalog(MethodView):
    @blp.doc(security=SHOP_KEY_SECURITY, requestBody={
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE},
            "application/json": {"schema": {"type": "object", "required": ["products"], "properties": {
                "products": {"type": "array", "items": {"$ref": "#/components/schemas/Product"}}}}},
        },
    })
    @blp.alt_response(200, schema=CatalogUploadSchema, success=True,
                      description="The good rows replaced the catalog; bad rows are listed in errors.")
    @blp.alt_response(422, description="Every row was bad (the catalog is unchanged), or the upload is unreadable.")
    @blp.alt_response(401, description="No key, or an unknown or revoked key.")
    @blp.alt_response(403, description="Not the shop's secret key.")
    def put(self):
        """Replace the shop's catalog (secret key): CSV with a header row, or JSON.

        Columns: sku, name, form (a form id), elemental_mg_per_unit, units_per_pack, price,
        currency (ISO 4217), url. A bad row is reported with its row number and reason and
        does not stop the good rows."""
        refused = require_shop("secret")
        if refused is not None:
            return refused
        media_type = request.mimetype
        if media_type not in (*CSV_MEDIA_TYPES, "application/json"):
            got = media_type or "no Content-Type"
            return problem(415, "Unsupported Media Type",
                           f"Send the catalog as text/csv or application/json (got '{got}').")
        shop = current_shop()
        try:
            key = request_key()
            summary = store_catalog(shop.id, read_upload(request.get_data(), media_type),
                                    actor=f"key {key.prefix}" if key is not None else "api")
        except CatalogError as error:
            return problem(422, "Catalog cannot be read", str(error), slug="catalog-unreadable")
        summary = {"shop": shop.name, **summary}
        if summary["rows_in"] and not summary["products_stored"]:
            listed = (f" errors lists the first {MAX_LISTED_ERRORS} problems."
                      if len(summary["errors"]) == MAX_LISTED_ERRORS else "")
            body = problem_body(422, "No valid catalog row",
                                f"Every row was rejected; the catalog is unchanged.{listed}",
                                summary["errors"], slug="catalog-rejected")
            return problem_from_body(body)
        return json_response(summary)

    # No security entry here: schemathesis's header cases then repeat too often for the fuzz
    # test's 200 distinct cases on an operation with no other input; 401/403 say it instead.
    @blp.alt_response(200, schema=CatalogListSchema, success=True, description="The shop's products.")
    @blp.alt_response(401, description="No key, or an unknown or revoked key.")
    @blp.alt_response(403, description="Not the shop's secret key.")
    def get(self):
        """The shop's catalog as stored (secret key)."""
        refused = require_shop("secret")
        if refused is not None:
            return refused
        shop = current_shop()
        return json_response({"shop": shop.name, "products": storage.list_products(shop.id)})


# ---- products in answers ----------------------------------------------------------------


def offer(product: dict, dose_range: dict, max_units_per_day: int | None = None) -> dict | None:
    """The product as listed under a recommended form: the fewest whole units a day that
    reach the dose range's minimum without passing its maximum, and the cost of a day.
    None when no whole number of units lands inside the range, or when that number is more
    than the person's ``max_units_per_day`` (their preference, when they set one)."""
    mg_per_unit = product["elemental_mg_per_unit"]
    units_per_day = max(1, math.ceil(dose_range["min"] / mg_per_unit - 1e-9))
    elemental_mg_per_day = units_per_day * mg_per_unit
    if elemental_mg_per_day > dose_range["max"] + 1e-9:
        return None
    if max_units_per_day is not None and units_per_day > max_units_per_day:
        return None
    price = Decimal(str(product["price"]))
    cost_per_day = (price * units_per_day / product["units_per_pack"]).quantize(CENT, rounding=ROUND_HALF_UP)
    return {
        "sku": product["sku"],
        "name": product["name"],
        "url": product["url"],
        "elemental_mg_per_unit": mg_per_unit,
        "units_per_day": units_per_day,
        "elemental_mg_per_day": round(elemental_mg_per_day, 1),
        "days_per_pack": product["units_per_pack"] // units_per_day,
        "price": float(price),
        "currency": product["currency"],
        "cost_per_day": float(cost_per_day),
        "image_url": product.get("image_url"),
        "cart_url": product.get("cart_url"),
    }


class CatalogIndex:
    """A shop's products by form, each form's list ordered by price per mg of magnesium, so
    that the few cheapest offers for a dose range are found without pricing every product.

    A product's cost a day is at least its price per mg times the range's minimum (it must
    reach the minimum), so once that bound passes the dearest of the offers kept, no later
    product can enter: the scan stops. The result is exactly what pricing every product of
    the form and keeping the cheapest MAX_PRODUCTS_PER_FORM would give."""

    def __init__(self, products: list[dict], experiment: ExperimentSettings | None = None):
        self.experiment = experiment  # the shop's running A/B experiment, loaded with its catalog
        self.by_sku = {product["sku"]: product for product in products}
        shelves: dict[str, list[tuple[float, str, dict]]] = defaultdict(list)
        for product in products:
            price_per_mg = product["price"] / product["units_per_pack"] / product["elemental_mg_per_unit"]
            shelves[product["form"]].append((price_per_mg, product["sku"], product))
        self.shelves = {form: sorted(shelf, key=lambda entry: entry[:2]) for form, shelf in shelves.items()}
        self.size = len(products)

    def offers(self, form: str, dose_range: dict, max_units_per_day: int | None) -> list[dict]:
        kept: list[tuple[float, str, dict]] = []  # (cost a day, sku, offer), cheapest first
        minimum = dose_range["min"]
        for price_per_mg, _, product in self.shelves.get(form, ()):
            # rounding to cents can lower a cost by half a cent at most
            if len(kept) == MAX_PRODUCTS_PER_FORM and price_per_mg * minimum - 0.005 - 1e-9 > kept[-1][0]:
                break
            item = offer(product, dose_range, max_units_per_day)
            if item is not None:
                bisect.insort(kept, (item["cost_per_day"], item["sku"], item), key=lambda entry: entry[:2])
                del kept[MAX_PRODUCTS_PER_FORM:]
        return [entry[2] for entry in kept]


class IndexCache:
    """The app's catalog indexes (each worker's, after the fork), by shop, rebuilt when the
    catalog's version changes. Per app, so that two apps on two databases never share one."""

    MAX_SHOPS = 256

    def __init__(self):
        self._indexes: dict[int, tuple[int, CatalogIndex]] = {}
        self._lock = threading.Lock()

    def index_for(self, shop_id: int) -> CatalogIndex:
        version = storage.catalog_version(shop_id)
        cached = self._indexes.get(shop_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        index = CatalogIndex(storage.list_products(shop_id), experiments.experiment_settings(shop_id))
        with self._lock:
            if len(self._indexes) >= self.MAX_SHOPS:
                self._indexes.pop(next(iter(self._indexes)))
            self._indexes[shop_id] = (version, index)
        return index


def catalog_indexes() -> IndexCache:
    return current_app.extensions["formwise_catalog_indexes"]


def shop_index(shop_id: int) -> CatalogIndex:
    """The shop's index, looked up once per request (the hooks of one answer share it)."""
    cached = g.get("_formwise_catalog_index")
    if cached is None or cached[0] != shop_id:
        cached = g._formwise_catalog_index = (shop_id, catalog_indexes().index_for(shop_id))
    return cached[1]


def products_per_recommendation() -> int:
    """Cost hook: how many products each recommendation of this request may list (0 without a
    shop key)."""
    shop = current_shop()
    return 0 if shop is None else min(MAX_PRODUCTS_PER_FORM, shop_index(shop.id).size)


def add_shop_products(answers: list[dict], locale: str, preferences: list[dict]) -> None:
    """Answer hook: with a shop's key, each recommendation gets ``products`` (possibly empty),
    cheapest a day first, each within the units a day the person accepts when they said.
    Excluded forms get nothing, and an answer with a critical caveat has no
    recommendations, so no products. Offers are worked out once per form, dose range and
    units a day within a request (a batch repeats them), from the shop's index."""
    shop = current_shop()
    if shop is None:
        return
    if not any(answer["recommendations"] for answer in answers):
        return
    index = shop_index(shop.id)
    worked_out: dict[tuple, list[dict]] = {}
    for position, (answer, wishes) in enumerate(zip(answers, preferences, strict=True)):
        if position % 64 == 63:
            deadline.check()
        max_units = wishes.get("max_units_per_day")
        excluded = {item["form"] for item in answer["excluded"]}
        control_sku = (answer.get("experiment") or {}).get("product")
        for recommendation in answer["recommendations"]:
            if recommendation["form"] in excluded:
                recommendation["products"] = []
                continue
            if control_sku is not None:  # the control arm: the shop's default product, and only it
                control = offer(index.by_sku[control_sku], recommendation["dose"]["elemental_mg_per_day"], max_units)
                recommendation["products"] = [] if control is None else [control]
                continue
            dose_range = recommendation["dose"]["elemental_mg_per_day"]
            key = (recommendation["form"], dose_range["min"], dose_range["max"], max_units)
            offers = worked_out.get(key)
            if offers is None:
                offers = worked_out[key] = index.offers(recommendation["form"], dose_range, max_units)
            recommendation["products"] = [dict(item) for item in offers]


def init_app(app, api) -> None:
    app.extensions["formwise_catalog_indexes"] = IndexCache()
    app.extensions["formwise_answer_hooks"].append(add_shop_products)
    app.extensions["formwise_cost_hooks"].append(products_per_recommendation)
