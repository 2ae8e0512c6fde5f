"""The WSGI app gunicorn serves: ``gunicorn -c gunicorn.conf.py formwise.service.wsgi:app`` (the
installed package) or ``wsgi:app`` from a checkout (the top-level wsgi.py)."""

import gc

from formwise.service.app import create_app

app = create_app()
# Everything made while starting (some 200,000 objects: Flask, numba, the knowledge base)
# lives as long as the process. Frozen, the collector stops walking it on every full
# collection (125 ms each, one request stalled about every 10,000 under load), and with the
# project's gunicorn config (preload) a forked worker stops touching, and so copying, the
# master's pages.
gc.freeze()
