"""Picked up by gunicorn when started from the project folder; the settings live in the
package so that an installed ``formwise serve`` uses the same ones."""

from service.gunicorn_config import *  # noqa: F403
