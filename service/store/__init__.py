"""The service's own database: the engine and sessions (``database``), the tables, the
queries the rest of the service calls, and the Alembic migrations."""
