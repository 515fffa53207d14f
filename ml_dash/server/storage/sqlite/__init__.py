"""ml_dash.server.storage.sqlite.store.sqlite."""
