"""ml_dash.server.http."""
