"""ml_dash.server.storage."""
