"""The web UI: static files (``static/``) served by ``ml-dash server`` and ``ml-dash ui``."""
