"""The service around the engine in ``formwise.models``, one room per audience:

- ``api``: the public HTTP API (answers, forms, feedback, the patient handout, errors,
  request parsing and schemas, the docs page, health);
- ``shops``: what web shops use (keys and CORS, rate limits, catalog, events, the widget);
- ``clinical``: what clinical systems use (CDS Hooks, their JWT check, FHIR reading);
- ``batch``: files scored overnight (readers, columns, writers, the run, the Dask engine);
- ``store``: the database (engine and sessions, tables, queries, migrations);
- ``cli``: the ``formwise`` command, one module per command group;
- ``ops``: logging, metrics, security headers and the gunicorn configuration and workers.

``app.py`` builds the Flask app and holds the one list of parts it registers;
``settings.py`` reads every setting once. Nothing here is clinical: the decisions are in
``formwise.models`` and the facts in ``formwise.data``."""
