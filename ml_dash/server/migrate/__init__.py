"""Moving a deployment: ``ml-dash migrate`` copies an embedded one (SQLite + a blob directory) to any
target pair of stores (PostgreSQL + S3, or SQLite + a directory), resumable and idempotent.

records.py   what moves (a run's row, the per-run tables, keys, grants, sessions), backend-neutral
source.py    the SQLite source, read in batches
target.py    the :class:`~.target.MigrationTarget` protocol a backend implements (``Storage.migration_target``)
copy.py      the order that makes it safe to kill and rerun (:func:`~.copy.migrate`)
"""
