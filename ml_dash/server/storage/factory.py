"""A storage backend by URL: ``open_storage("sqlite:///srv/ml-dash/ml-dash.sqlite3")``.

Supported (:data:`SUPPORTED`): ``sqlite:///ABSOLUTE/PATH`` and a plain file path, which mean SQLite;
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?pool_size=N&...]`` (also ``postgres://``), which
means PostgreSQL (asyncpg, the ``postgres`` extra). A backend plugs in here, as one more scheme: the
app, ``serve``, the ``keys`` commands and ``ml-dash ui`` open their storage through this function and
use only the :class:`~.protocol.Storage` protocol. A password is better left out of the URL (which
``ps`` shows): PostgreSQL's own ``PGPASSWORD`` or ``~/.pgpass`` are read. It is never printed:
:func:`shown` hides it wherever a URL is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from .errors import StorageURLError
from .protocol import Storage

#: The URL forms :func:`open_storage` takes, as an error names them.
SUPPORTED = ("sqlite:///ABSOLUTE/PATH", "a plain file path (SQLite)", "postgresql://USER@HOST:PORT/DATABASE")
#: The schemes that mean PostgreSQL (libpq takes both).
POSTGRES_SCHEMES = ("postgresql", "postgres")
#: Connections of one instance's pool unless the URL's ``pool_size`` says otherwise, and the most it may say.
POOL_SIZE, MAX_POOL_SIZE = 10, 1000


def shown(url: str) -> str:
    """``url`` as it may be printed: a password in it replaced by ``***`` (errors and logs never carry it)."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    secret_option = any(key == "password" for key, _ in options)  # libpq takes ?password= too
    if parts.password is None and not secret_option:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    query = "&".join(f"{key}=***" if key == "password" else urlencode([(key, value)]) for key, value in options) \
        if secret_option else parts.query
    return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()


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


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL URL taken apart: what asyncpg connects with (``dsn``, the URL less the options that are
    ml-dash's), the pool's size, and the URL as it may be printed."""

    dsn: str
    pool_size: int
    shown: str


def postgres_target(url: str) -> PostgresTarget | None:
    """The database a ``postgresql://`` URL names; None for another scheme. A PostgreSQL URL without a
    host or a database, or with a bad ``pool_size``, is a :class:`StorageURLError`."""
    if scheme_of(url) not in POSTGRES_SCHEMES:
        return None
    form = "postgresql://USER@HOST:PORT/DATABASE (options after ?: pool_size=N, and libpq's such as sslmode)"
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    database = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port
    except ValueError:
        raise StorageURLError(f"{shown(url)}: a bad port; a PostgreSQL URL is {form}") from None
    if not database or "/" in database or not (parts.hostname or any(k == "host" for k, _ in options)) or \
            parts.fragment or (port is not None and not 0 < port < 65536):
        raise StorageURLError(f"{shown(url)}: a PostgreSQL URL is {form}")
    pool_size = POOL_SIZE
    for key, value in options:
        if key == "pool_size":
            if not value.isdigit() or not 1 <= int(value) <= MAX_POOL_SIZE:
                raise StorageURLError(f"{shown(url)}: pool_size must be a whole number within 1..{MAX_POOL_SIZE}")
            pool_size = int(value)
    rest = urlencode([(k, v) for k, v in options if k != "pool_size"])
    dsn = SplitResult("postgresql", parts.netloc, parts.path, rest, "").geturl()
    return PostgresTarget(dsn, pool_size, shown(url))


def storage_for(url: str) -> Storage:
    """The backend ``url`` names, not yet opened. :class:`StorageURLError` for a scheme no backend
    takes, naming it and the supported forms."""
    path = sqlite_path(url)
    if path is not None:
        from .sqlite.store import SQLiteStorage  # a backend loads only when it is used

        return SQLiteStorage(path)
    target = postgres_target(url)
    if target is not None:
        try:
            from .postgres.store import PostgresStorage
        except ImportError as exc:  # the optional driver is missing
            raise StorageURLError(f"{target.shown}: PostgreSQL needs the asyncpg driver ({exc}); "
                                  "pip install 'ml-dash[postgres]'") from None
        return PostgresStorage(target.dsn, target.shown, target.pool_size)
    raise StorageURLError(f"unsupported storage URL scheme {scheme_of(url)!r} in {shown(url)}; "
                          f"supported: {', '.join(SUPPORTED)}")


async def open_storage(url: str) -> Storage:
    """The backend ``url`` names, opened (schema created or migrated): the caller closes it.
    Raises :class:`StorageURLError` for an unknown scheme or a bad URL, :class:`~.errors.StorageError`
    when the database cannot be opened."""
    storage = storage_for(url)
    await storage.open()
    return storage
