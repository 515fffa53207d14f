"""ml_dash.server.blobs."""
