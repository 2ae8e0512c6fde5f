"""``formwise shops ...``, ``formwise catalog upload`` and ``formwise db upgrade``: what a shop
operator runs to set a shop up, rotate its keys, load its products and read its report.

They work on the database the server uses (``DATABASE_URL``, else the SQLite file in
``FORMWISE_DATA_DIR`` or the instance folder), so run them with the same environment."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click


def database_app():
    """The app with only the settings and the database: these commands need no engine."""
    from formwise.service.app import DATABASE_PARTS, create_app

    return create_app(parts=DATABASE_PARTS)


@contextlib.contextmanager
def _app_context():
    from formwise.service.store.database import engine_of

    try:
        app = database_app()
    except ValueError as error:  # a bad setting, named in the message
        _fail(str(error))
    try:
        with app.app_context():
            yield app
    finally:
        engine_of(app).dispose()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _print_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# ---- formwise db ------------------------------------------------------------------------


@click.group()
def db():
    """The service's database (shops, keys, catalogs, attribution)."""


@db.command("upgrade")
def db_upgrade():
    """Create or migrate the database schema to the newest version (the server also does
    this on its first start)."""
    from formwise.service.app import create_app
    from formwise.service.store import database

    app = create_app(parts=())  # the settings alone: the schema is migrated below, not at start
    url = database.database_url_for(app)
    engine = database.make_engine(url)
    before = database.current_revision(engine)
    after = database.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: migrated from {before or 'an empty database'} to revision {after}")
    engine.dispose()


@db.command("prune")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Keep this many days (default FORMWISE_RETENTION_DAYS, else 90).")
@click.option("--json", "as_json", is_flag=True)
def db_prune(days, as_json):
    """Delete stored answer ids, events, outcomes and CDS feedback older than the retention
    period, and expired CDS cards and token ids (run it daily, e.g. from cron)."""
    import datetime as dt
    import time

    from formwise.service.store import queries as storage

    with _app_context():
        days = days or storage.retention_days()
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        deleted = storage.prune(cutoff, time.time())
    if as_json:
        _print_json({"kept_days": days, "deleted": deleted})
        return
    click.echo(f"Kept the last {days} days; deleted " + ", ".join(f"{count} {name}" for name, count in deleted.items())
               + ".")


@click.command("audit")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="How far back.")
@click.option("--action", default=None, help="Only this action (shop.created, key.revoked, origin.added, "
                                            "origin.removed, catalog.replaced, cds.call).")
@click.option("--json", "as_json", is_flag=True)
def audit(days, action, as_json):
    """Who changed shops' keys, origins and catalogs, and which CDS clients called, newest
    first."""
    import datetime as dt

    from formwise.service.store import queries as storage

    if action is not None and action not in storage.AUDIT_ACTIONS:  # the list lives once, in storage
        _fail(f"--action must be one of {', '.join(storage.AUDIT_ACTIONS)}, not {action!r}")
    with _app_context():
        entries = storage.list_audit(since=dt.datetime.now(dt.UTC) - dt.timedelta(days=days), action=action)
    if as_json:
        _print_json(entries)
        return
    if not entries:
        click.echo(f"No audit entries in the last {days} days.")
    for entry in entries:
        details = " ".join(f"{key}={value}" for key, value in entry["details"].items())
        click.echo(printable(f"{entry['at'][:19]}  {entry['action']:<17} {entry['subject']}  by {entry['actor']}"
                             f"  {details}"))


# ---- formwise shops ---------------------------------------------------------------------


@click.group()
def shops():
    """Shops, their origins and API keys, and their conversion reports."""


@shops.command("create")
@click.argument("name")
@click.option("--origin", "origins", multiple=True, required=True, metavar="URL",
              help="A web origin whose pages may use the publishable key, such as https://shop.example. Repeat.")
@click.option("--json", "as_json", is_flag=True, help='Print {"shop_id", "publishable_key", "secret_key"}.')
def create(name, origins, as_json):
    """Create a shop and print its keys: shown this once, stored only as hashes."""
    from formwise.service.shops import keys as shop_keys

    with _app_context():
        try:
            created = shop_keys.create_shop(name, list(origins))
        except ValueError as error:
            _fail(str(error))
    if as_json:
        _print_json({key: created[key] for key in ("shop_id", "publishable_key", "secret_key")})
        return
    click.echo(f"Created shop '{created['name']}' (id {created['shop_id']}) for {', '.join(created['origins'])}.")
    click.echo(f"Publishable key (for your web pages): {created['publishable_key']}")
    click.echo(f"Secret key (server to server only, keep it secret): {created['secret_key']}")
    click.echo("These keys are shown only now: formwise stores only their hashes.")


@shops.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_command(as_json):
    """List shops with their origins, keys (by prefix) and product counts."""
    from formwise.service.store import queries as storage

    with _app_context():
        rows = storage.list_shops()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("No shops yet: formwise shops create NAME --origin https://shop.example")
    for row in rows:
        click.echo(f"{row['name']} (id {row['shop_id']}), {row['products']} products")
        click.echo(f"  origins: {', '.join(row['origins']) or '(none)'}")
        for key in row["keys"]:
            state = "active" if key["active"] else "revoked"
            click.echo(f"  {key['kind']:<12} {key['prefix']}...  {state}")


@shops.command("add-origin")
@click.argument("name")
@click.argument("origin")
def add_origin(name, origin):
    """Let the pages of ORIGIN use the shop's publishable key."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with _app_context():
        try:
            normalized = shop_keys.normalize_origin(origin)
            added = storage.add_origin(name, normalized)
            if added:
                storage.record_audit("origin.added", "cli", name, {"origin": normalized})
        except (ValueError, storage.NotFoundError) as error:
            _fail(str(error))
    click.echo(f"Added {normalized} to '{name}'." if added else f"'{name}' already lists {normalized}.")


@shops.command("remove-origin")
@click.argument("name")
@click.argument("origin")
def remove_origin(name, origin):
    """Stop the pages of ORIGIN from using the shop's publishable key."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with _app_context():
        try:
            normalized = shop_keys.normalize_origin(origin)
            removed = storage.remove_origin(name, normalized)
            if removed:
                storage.record_audit("origin.removed", "cli", name, {"origin": normalized})
        except (ValueError, storage.NotFoundError) as error:
            _fail(str(error))
    if not removed:
        _fail(f"'{name}' does not list {normalized}.")
    click.echo(f"Removed {normalized} from '{name}'.")


@shops.command("revoke-key")
@click.argument("key")
@click.option("--replace", is_flag=True, help="Issue a new key of the same kind to the same shop and print it.")
@click.option("--json", "as_json", is_flag=True)
def revoke_key(key, replace, as_json):
    """Revoke a key, given whole or by the prefix `shops list` shows. It stops working at once."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with _app_context():
        try:
            record, new_key = shop_keys.revoke_key(key.strip(), replace=replace)
        except storage.NotFoundError as error:
            _fail(str(error))
    if as_json:
        _print_json({"shop_id": record.shop_id, "revoked": record.prefix, "kind": record.kind, "new_key": new_key})
        return
    click.echo(f"Revoked the {record.kind} key {record.prefix}... of '{record.shop_name}'.")
    if new_key:
        click.echo(f"New {record.kind} key (shown only now): {new_key}")


def _rate_text(rate) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def printable(text) -> str:
    """Text a shop wrote (a product name, a SKU), safe on a terminal: control characters
    (CR, LF, escape sequences) are shown as \\uXXXX instead of acting."""
    return "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in str(text))


@shops.command("report")
@click.argument("name")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (UTC), YYYY-MM-DD.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (UTC), YYYY-MM-DD.")
@click.option("--group", type=click.Choice(["form", "product", "day"]), default="form", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def report(name, start, end, group, as_json):
    """Conversion figures (the same as GET /v1/reports/conversions): the widget's traffic and
    the shop's own server calls apart, events on products an answer did not show apart."""
    from formwise.service.shops.reports import conversion_report
    from formwise.service.store import queries as storage

    with _app_context():
        try:
            result = conversion_report(storage.shop_id_by_name(name), start and start.date(), end and end.date(),
                                       group)
        except storage.NotFoundError as error:
            _fail(str(error))
    if as_json:
        _print_json(result)
        return
    header = (f"{'views':>7}{'clicks':>8}{'carts':>7}{'orders':>8}{'units':>7}{'click rate':>12}{'conversion':>12}"
              "  revenue")

    def counts(row):
        revenue = ", ".join(f"{amount} {currency}" for currency, amount in row["revenue"].items()) or "-"
        return (f"{row['views']:>7}{row['clicks']:>8}{row['add_to_cart']:>7}{row['orders']:>8}{row['units']:>7}"
                f"{_rate_text(row['click_rate']):>12}{_rate_text(row['conversion']):>12}  {revenue}")

    span = f"{result['from'] or 'the start'} to {result['to'] or 'today'}"
    click.echo(f"{printable(name)}, {span}, by {group}")
    for channel, title in (("widget", "the widget (publishable key)"), ("server", "the shop's server (secret key)")):
        block = result[channel]
        click.echo("")
        click.echo(f"{title}: {block['answers']} answers")
        click.echo(f"{'':<24}{header}")
        for row in block["rows"]:
            label = row["day"] if group == "day" else row["form"] if group == "form" else row["sku"]
            extra = f"  {row['form']}  {printable(row['name'])}" if group == "product" else ""
            click.echo(f"{printable(label):<24}{counts(row)}{extra}")
        click.echo(f"{'total':<24}{counts(block['totals'])}")
    click.echo("")
    click.echo(f"{'unattributed':<24}{counts(result['unattributed'])}")


# ---- formwise catalog -------------------------------------------------------------------


@click.group()
def catalog():
    """A shop's products."""


@catalog.command("upload")
@click.argument("shop")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def upload(shop, path, as_json):
    """Replace SHOP's catalog with the products in PATH (.csv with a header row, or .json
    as {"products": [...]}), the same format as PUT /v1/catalog. Bad rows are listed and
    skipped; if every row is bad the catalog is left unchanged and the exit status is 1."""
    from formwise.service.shops import catalog as shop_catalog
    from formwise.service.store import queries as storage

    media_types = {".csv": "text/csv", ".json": "application/json"}
    media_type = media_types.get(path.suffix.lower())
    if media_type is None:
        _fail(f"{path.name}: use a .csv or .json file.")
    with _app_context():
        try:
            shop_id = storage.shop_id_by_name(shop)
            summary = shop_catalog.store_catalog(shop_id, shop_catalog.read_upload(path.read_bytes(), media_type))
        except (storage.NotFoundError, shop_catalog.CatalogError) as error:
            _fail(str(error))
    if as_json:
        _print_json({"shop": shop, **summary})
    else:
        for error in summary["errors"]:
            click.echo(f"row {error['row']}, {error['field']}: {error['message']}", err=True)
        click.echo(f"rows_in {summary['rows_in']}, products_stored {summary['products_stored']}, "
                   f"rows_rejected {summary['rows_rejected']}")
    if summary["rows_in"] and not summary["products_stored"]:
        _fail("every row was rejected; the catalog is unchanged.")


def register(main: click.Group) -> None:
    for group in (db, shops, catalog, audit):
        main.add_command(group)
