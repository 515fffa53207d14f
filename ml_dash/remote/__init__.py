"""ml_dash.remote."""
