"""ml_dash.format."""
