"""The PostgreSQL storage backend (asyncpg): ``postgresql://USER@HOST:PORT/DATABASE`` (store.py)."""
