"""``formwise db upgrade|prune`` and ``formwise audit``: the service database's schema and
retention, and the audit log of who changed shops, keys, origins and catalogs."""

from __future__ import annotations

import click

from formwise.service.cli.common import app_context, fail, print_json, printable


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

    with app_context():
        days = days or storage.retention_days()
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        deleted = storage.prune(cutoff, time.time())
    if as_json:
        print_json({"kept_days": days, "deleted": deleted})
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
        fail(f"--action must be one of {', '.join(storage.AUDIT_ACTIONS)}, not {action!r}")
    with app_context():
        entries = storage.list_audit(since=dt.datetime.now(dt.UTC) - dt.timedelta(days=days), action=action)
    if as_json:
        print_json(entries)
        return
    if not entries:
        click.echo(f"No audit entries in the last {days} days.")
    for entry in entries:
        details = " ".join(f"{key}={value}" for key, value in entry["details"].items())
        click.echo(printable(f"{entry['at'][:19]}  {entry['action']:<17} {entry['subject']}  by {entry['actor']}"
                             f"  {details}"))


def register(main: click.Group) -> None:
    for group in (db, audit):
        main.add_command(group)
