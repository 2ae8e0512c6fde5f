"""What the commands that work on the service's database share: the app they open (the app
factory with the database part only), failing with a message, printing JSON, and printing a
shop's own text safely on a terminal."""

from __future__ import annotations

import contextlib
import json
import sys

import click


def database_app():
    """The app with only the settings and the database: these commands need no engine."""
    from formwise.service.app import DATABASE_PARTS, create_app

    return create_app(parts=DATABASE_PARTS)


@contextlib.contextmanager
def app_context():
    from formwise.service.store.database import engine_of

    try:
        app = database_app()
    except ValueError as error:  # a bad setting, named in the message
        fail(str(error))
    try:
        with app.app_context():
            yield app
    finally:
        engine_of(app).dispose()


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def print_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def printable(text) -> str:
    """Text a shop wrote (a product name, a SKU), safe on a terminal: control characters
    (CR, LF, escape sequences) are shown as \\uXXXX instead of acting."""
    return "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in str(text))
