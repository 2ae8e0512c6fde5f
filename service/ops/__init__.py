"""Running the service: the JSON log, Prometheus metrics and security headers on every
response, and gunicorn's configuration and workers."""
