"""Route handlers kept apart from app.py."""
