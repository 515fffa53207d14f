"""ml_dash.agent.upload."""
