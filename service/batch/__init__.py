"""``formwise score``: files scored in chunks through the one engine. ``files`` runs a
whole file; ``readers`` (with ``lines``, for lines too long) and ``writers`` speak CSV, JSON
Lines and Parquet; ``columns`` turns a chunk into engine input and its output back into
columns; ``cluster`` runs the same chunk scorer on Dask."""
