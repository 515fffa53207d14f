"""HTTP plumbing of the server: middlewares (hosts, timing, text, the UI token), bodies, admission, etags."""
