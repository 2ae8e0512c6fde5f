"""What web shops use: API keys and CORS per shop, rate limits, the catalog and its place in
the answers, attribution events and the embeddable widget with its static script."""
