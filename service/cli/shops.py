"""``formwise shops ...`` and ``formwise catalog upload``: what a shop operator runs to set a
shop up, issue, rotate and revoke its keys, rename or delete it, load its products and read
its report.

They work on the database the server uses (``DATABASE_URL``, else the SQLite file in
``FORMWISE_DATA_DIR`` or the instance folder), so run them with the same environment."""

from __future__ import annotations

from pathlib import Path

import click

from formwise.service.cli.common import app_context, fail, print_json, printable

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

    with app_context():
        try:
            created = shop_keys.create_shop(name, list(origins))
        except ValueError as error:
            fail(str(error))
    if as_json:
        print_json({key: created[key] for key in ("shop_id", "publishable_key", "secret_key")})
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

    with app_context():
        rows = storage.list_shops()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("No shops yet: formwise shops create NAME --origin https://shop.example")
    for row in rows:
        click.echo(f"{row['name']} (id {row['shop_id']}), {row['products']} products")
        click.echo(f"  origins: {', '.join(row['origins']) or '(none)'}")
        for key in row["keys"]:
            expiry = f"  until {key['expires_at'][:16]}" if key["expires_at"] and key["state"] == "active" else ""
            label = printable(key["name"] or "")
            click.echo(f"  {key['kind']:<12} {key['prefix']}...  {key['state']}{expiry}  {label}")


@shops.command("add-origin")
@click.argument("name")
@click.argument("origin")
def add_origin(name, origin):
    """Let the pages of ORIGIN use the shop's publishable key."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with app_context():
        try:
            normalized = shop_keys.normalize_origin(origin)
            added = storage.add_origin(name, normalized)
            if added:
                storage.record_audit("origin.added", "cli", name, {"origin": normalized})
        except (ValueError, storage.NotFoundError) as error:
            fail(str(error))
    click.echo(f"Added {normalized} to '{name}'." if added else f"'{name}' already lists {normalized}.")


@shops.command("remove-origin")
@click.argument("name")
@click.argument("origin")
def remove_origin(name, origin):
    """Stop the pages of ORIGIN from using the shop's publishable key."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with app_context():
        try:
            normalized = shop_keys.normalize_origin(origin)
            removed = storage.remove_origin(name, normalized)
            if removed:
                storage.record_audit("origin.removed", "cli", name, {"origin": normalized})
        except (ValueError, storage.NotFoundError) as error:
            fail(str(error))
    if not removed:
        fail(f"'{name}' does not list {normalized}.")
    click.echo(f"Removed {normalized} from '{name}'.")


UTC_MOMENT = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])


def _utc(moment):
    """A date or a date and time given on the command line, read as UTC (a bare date: its start)."""
    import datetime as dt

    return None if moment is None else moment.replace(tzinfo=dt.UTC)


@shops.command("keys")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def keys_command(name, as_json):
    """List NAME's keys: kind, prefix, name, state, created, last used (to the hour), expiry."""
    from formwise.service.store import queries as storage

    with app_context():
        try:
            rows = storage.shop_keys(name)
        except storage.NotFoundError as error:
            fail(str(error))
    if as_json:
        print_json(rows)
        return
    for key in rows:
        click.echo(f"{key['kind']:<12} {key['prefix']}...  {key['state']:<8} {printable(key['name'] or '-'):<20}"
                   f" created {key['created_at'][:16]}  last used {(key['last_used_at'] or 'never')[:16]}"
                   f"  expires {(key['expires_at'] or 'never')[:16]}")


@shops.command("create-key")
@click.argument("name")
@click.option("--kind", type=click.Choice(["publishable", "secret"]), required=True)
@click.option("--name", "key_name", default=None, help="What the key is for (\"checkout server\").")
@click.option("--expires", type=UTC_MOMENT, default=None, help="When it stops working (UTC), YYYY-MM-DD[THH:MM].")
@click.option("--json", "as_json", is_flag=True)
def create_key(name, kind, key_name, expires, as_json):
    """Issue one more KIND key to NAME (a shop may have several active keys of a kind)."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with app_context():
        try:
            key = shop_keys.create_key(name, kind, key_name, _utc(expires))
        except (ValueError, storage.NotFoundError) as error:
            fail(str(error))
    if as_json:
        print_json({"key": key, "kind": kind, "name": key_name, "expires_at": _utc(expires)})
        return
    click.echo(f"New {kind} key for '{printable(name)}' (shown only now): {key}")


@shops.command("rotate-key")
@click.argument("name")
@click.option("--kind", type=click.Choice(["publishable", "secret"]), required=True)
@click.option("--keep-old-until", type=UTC_MOMENT, required=True,
              help="Until when (UTC) the shop's current keys of this kind keep working, YYYY-MM-DD[THH:MM].")
@click.option("--name", "key_name", default=None, help="A name for the new key.")
@click.option("--json", "as_json", is_flag=True)
def rotate_key(name, kind, keep_old_until, key_name, as_json):
    """Issue a new KIND key to NAME; its current keys of that kind keep working until the
    moment given (so pages and servers can switch without an outage) and stop then."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    until = _utc(keep_old_until)
    with app_context():
        try:
            key, expiring = shop_keys.rotate_key(name, kind, until, key_name)
        except (ValueError, storage.NotFoundError) as error:
            fail(str(error))
    if as_json:
        print_json({"key": key, "kind": kind, "expiring": expiring, "until": until})
        return
    click.echo(f"New {kind} key for '{printable(name)}' (shown only now): {key}")
    for prefix in expiring:
        click.echo(f"The key {prefix}... keeps working until {until.isoformat()} and stops then.")


@shops.command("rename")
@click.argument("name")
@click.argument("new_name")
def rename(name, new_name):
    """Rename a shop (its keys, origins, catalog and figures stay)."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with app_context():
        try:
            shop_keys.rename_shop(name, new_name)
        except (ValueError, storage.NotFoundError) as error:
            fail(str(error))
    click.echo(f"Renamed '{printable(name)}' to '{printable(new_name.strip())}'.")


@shops.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: the shop's keys, origins, catalog, answers and events go.")
@click.option("--json", "as_json", is_flag=True)
def delete(name, yes, as_json):
    """Delete a shop and everything it stored, and say how many rows went."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    if not yes:
        fail(f"This deletes '{name}' with its keys, origins, catalog, answers and events; add --yes to do it.")
    with app_context():
        try:
            counted = shop_keys.delete_shop(name)
        except storage.NotFoundError as error:
            fail(str(error))
    if as_json:
        print_json({"deleted": counted})
        return
    click.echo(f"Deleted '{printable(name)}': " + ", ".join(f"{count} {table}" for table, count in counted.items())
               + ".")


@shops.command("revoke-key")
@click.argument("key")
@click.option("--replace", is_flag=True, help="Issue a new key of the same kind to the same shop and print it.")
@click.option("--json", "as_json", is_flag=True)
def revoke_key(key, replace, as_json):
    """Revoke a key, given whole or by the prefix `shops list` shows. It stops working at once."""
    from formwise.service.shops import keys as shop_keys
    from formwise.service.store import queries as storage

    with app_context():
        try:
            record, new_key = shop_keys.revoke_key(key.strip(), replace=replace)
        except storage.NotFoundError as error:
            fail(str(error))
    if as_json:
        print_json({"shop_id": record.shop_id, "revoked": record.prefix, "kind": record.kind, "new_key": new_key})
        return
    click.echo(f"Revoked the {record.kind} key {record.prefix}... of '{record.shop_name}'.")
    if new_key:
        click.echo(f"New {record.kind} key (shown only now): {new_key}")


def _rate_text(rate) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


@shops.command("experiment")
@click.argument("name")
@click.option("--control-share", type=click.FloatRange(0, 0.9, min_open=True), default=None,
              help="The share of widget visits shown the shop's default product instead of the ranking.")
@click.option("--default", "defaults", multiple=True, metavar="GOAL=SKU",
              help="The control's product for a goal; 'general=SKU' is required (it covers the rest). Repeat.")
@click.option("--stop", is_flag=True, help="Show every visit the ranking again (the figures stay).")
@click.option("--json", "as_json", is_flag=True)
def experiment(name, control_share, defaults, stop, as_json):
    """Start (or replace) an A/B experiment against a control, stop it, or show it."""
    from formwise.models.knowledge import vocabulary as vocab
    from formwise.service.store import experiments
    from formwise.service.store import queries as storage

    controls = {}
    for item in defaults:
        goal, _, sku = item.partition("=")
        if goal not in vocab.GOALS or not sku:
            fail(f"--default must be GOAL=SKU with a goal among {', '.join(vocab.GOALS)}, not {item!r}")
        controls[goal] = sku.strip()
    if stop and (control_share is not None or controls):
        fail("--stop takes no --control-share or --default.")
    with app_context():
        try:
            if stop:
                experiments.stop_experiment(name)
            elif control_share is not None:
                experiments.start_experiment(name, control_share, controls)
            elif controls:
                fail("Give --control-share to start an experiment.")
            current = experiments.current_experiment(storage.shop_id_by_name(name))
        except (ValueError, storage.NotFoundError) as error:
            fail(str(error))
    if as_json:
        print_json(current)
        return
    if current is None:
        click.echo(f"'{printable(name)}' has run no experiment.")
        return
    state = f"running, control share {current['control_share']:.0%}" if current["running"] else "stopped"
    click.echo(f"Experiment {current['experiment_id']} of '{printable(name)}' ({state}), since {current['started_at']}")
    for goal, sku in sorted(current["controls"].items()):
        click.echo(f"  control product for {goal}: {printable(sku)}")


@shops.command("dashboard")
@click.argument("name")
@click.option("--hours", type=click.FloatRange(min=0.01, max=24 * 7), default=8, show_default=True,
              help="How long the link works.")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the service is reached from the shop's browser.")
def dashboard(name, hours, base_url):
    """Print a short-lived link that opens NAME's dashboard (no key needed in the browser)."""
    import datetime as dt

    from formwise.service.shops.dashboard import issue_token
    from formwise.service.store import queries as storage

    with app_context():
        try:
            token, expires = issue_token(storage.shop_id_by_name(name), hours)
        except storage.NotFoundError as error:
            fail(str(error))
    until = dt.datetime.fromtimestamp(expires, dt.UTC).isoformat(timespec="minutes")
    click.echo(f"{base_url.rstrip('/')}/dashboard#token={token}")
    click.echo(f"(works until {until}; anyone with the link sees the shop's figures)", err=True)


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

    with app_context():
        try:
            result = {"shop": name, **conversion_report(storage.shop_id_by_name(name), start and start.date(),
                                                        end and end.date(), group)}
        except storage.NotFoundError as error:
            fail(str(error))
    if as_json:
        print_json(result)
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
    trial = result["experiment"]
    if trial is not None:
        click.echo("")
        state = "running" if trial["running"] else "stopped"
        click.echo(f"experiment {trial['experiment_id']} ({state}, control share {trial['control_share']:.0%})")
        for arm, figures in trial["arms"].items():
            click.echo(f"  {arm:<10} {figures['answers']:>7} answers {figures['converted']:>6} converted"
                       f"  {_rate_text(figures['conversion']):>7}  safety overrides {figures['safety_overrides']}")
        if trial["difference"] is not None:
            low, high = trial["difference"]["ci95"]
            click.echo(f"  ranking - control: {trial['difference']['ranking_minus_control'] * 100:+.1f} points "
                       f"(95% CI {low * 100:+.1f} to {high * 100:+.1f})")


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
        fail(f"{path.name}: use a .csv or .json file.")
    with app_context():
        try:
            shop_id = storage.shop_id_by_name(shop)
            summary = shop_catalog.store_catalog(shop_id, shop_catalog.read_upload(path.read_bytes(), media_type))
        except (storage.NotFoundError, shop_catalog.CatalogError) as error:
            fail(str(error))
    if as_json:
        print_json({"shop": shop, **summary})
    else:
        for error in summary["errors"]:
            click.echo(f"row {error['row']}, {error['field']}: {error['message']}", err=True)
        click.echo(f"rows_in {summary['rows_in']}, products_stored {summary['products_stored']}, "
                   f"rows_rejected {summary['rows_rejected']}")
    if summary["rows_in"] and not summary["products_stored"]:
        fail("every row was rejected; the catalog is unchanged.")


def register(main: click.Group) -> None:
    for group in (shops, catalog):
        main.add_command(group)
