"""A storage backend by URL: ``open_storage("sqlite:///srv/ml-dash/ml-dash.sqlite3")``.

Supported (:data:`SUPPORTED`): ``sqlite:///ABSOLUTE/PATH`` and a plain file path, which means SQLite.
A backend plugs in here, as one more scheme (the next: ``postgresql://``): the app, ``serve``, the
``keys`` commands and ``ml-dash ui`` open their storage through this function and use only the
:class:`~.protocol.Storage` protocol.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from .errors import StorageURLError
from .protocol import Storage

#: The URL forms :func:`open_storage` takes, as an error names them.
SUPPORTED = ("sqlite:///ABSOLUTE/PATH", "a plain file path (SQLite)")


def shown(url: str) -> str:
    """``url`` as it may be printed: a password in it replaced by ``***`` (errors and logs never carry it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()


def scheme_of(url: str) -> str | None:
    """The URL's scheme, or None for a plain path (``C:\\...`` on Windows included)."""
    if "://" not in url:
        return None
    return url.split("://", 1)[0].lower()


def local_path(url: str, scheme: str, what: str, form: str, hosts: tuple[str, ...] = ("",)) -> Path | None:
    """The path a ``scheme:///ABSOLUTE/PATH`` URL (or a plain path) names; None for another scheme. A URL
    of ``scheme`` that names no absolute path (a host outside ``hosts``, options, a bare ``/``) is a
    :class:`StorageURLError` saying the ``form`` expected; ``what`` names the location in the error."""
    found = scheme_of(url)
    if found is None:
        if not url.strip():
            raise StorageURLError(f"an empty {what} location; give a path or {scheme}:///ABSOLUTE/PATH")
        return Path(url)
    if found != scheme:
        return None
    parts = urlsplit(url)
    if parts.netloc not in hosts or parts.query or parts.fragment or not parts.path.startswith("/") or parts.path == "/":
        raise StorageURLError(f"{shown(url)}: a {what} URL is {form}")
    return Path(unquote(parts.path))


def sqlite_path(url: str) -> Path | None:
    """The database file a SQLite URL (or a plain path) names; None for another scheme. A URL that is
    SQLite's but names no absolute file is a :class:`StorageURLError`."""
    return local_path(url, "sqlite", "storage", "sqlite:///ABSOLUTE/PATH (three slashes, then the absolute path "
                      "of the database file; no host, no options)")


def storage_for(url: str) -> Storage:
    """The backend ``url`` names, not yet opened. :class:`StorageURLError` for a scheme no backend
    takes, naming it and the supported forms."""
    path = sqlite_path(url)
    if path is not None:
        from .sqlite.store import SQLiteStorage  # a backend loads only when it is used

        return SQLiteStorage(path)
    raise StorageURLError(f"unsupported storage URL scheme {scheme_of(url)!r} in {shown(url)}; "
                          f"supported: {', '.join(SUPPORTED)}")


async def open_storage(url: str) -> Storage:
    """The backend ``url`` names, opened (schema created or migrated): the caller closes it.
    Raises :class:`StorageURLError` for an unknown scheme or a bad URL, :class:`~.errors.StorageError`
    when the database cannot be opened."""
    storage = storage_for(url)
    await storage.open()
    return storage
