"""ml_dash.server.routes."""
