"""ml_dash.server.ingest."""
