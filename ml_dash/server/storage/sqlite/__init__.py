"""The embedded SQLite backend of the server's storage (store.py, with ingest, metrics, logs, streams)."""
