"""The ``formwise`` command: one click group (``main``) and one module per command group."""
