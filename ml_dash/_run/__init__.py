"""ml_dash._run."""
