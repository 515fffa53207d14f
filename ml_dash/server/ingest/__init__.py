"""Ingest requests: decoding and checking a body (decode.py) and the worker processes that do it (prepare.py)."""
