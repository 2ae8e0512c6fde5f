"""The WSGI entry point from a checkout: ``gunicorn -c gunicorn.conf.py wsgi:app``. The app
itself is built in formwise.service.wsgi, which an installed ``formwise serve`` uses."""

from formwise.service.wsgi import app

__all__ = ["app"]
