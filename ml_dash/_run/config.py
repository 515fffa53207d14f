"""Where an experiment writes and which server it talks to.

Precedence, for each setting, first match wins:

1. the explicit ``Experiment(...)`` argument (``local_path``; ``remote``; ``api_key``; ``user_name``),
   or its upstream spelling (``dash_root`` = a root the prefix is appended to; ``dash_url`` = ``remote``);
2. ``ML_DASH_LOCAL_PATH`` / ``ML_DASH_API_URL`` / ``ML_DASH_API_KEY`` / ``ML_DASH_USER_NAME``;
3. ``DREAMLAKE_LOCAL_PATH`` / ``DREAMLAKE_API_URL`` / ``DREAMLAKE_API_KEY``;
4. the default: local mode in ``.dash/<prefix>`` under the working directory.

How a directory is read (two runs with different prefixes never share one):

* ``local_path=`` is the experiment's own directory when its last three components are the
  prefix (``.dash/owner/project/name``, as the specification writes it); any other path is a
  root, and the run goes to ``local_path/owner/project/name`` (so ``local_path="./experiments"``
  holds many runs, as in the specification's hybrid example);
* ``dash_root=`` and the ``*_LOCAL_PATH`` variables are always a root;
* a directory whose ``experiment.json`` names another prefix is refused when the run starts.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

ENV_LOCAL_PATH = ("ML_DASH_LOCAL_PATH", "DREAMLAKE_LOCAL_PATH")
ENV_API_URL = ("ML_DASH_API_URL", "DREAMLAKE_API_URL")
ENV_API_KEY = ("ML_DASH_API_KEY", "DREAMLAKE_API_KEY")
ENV_USER_NAME = ("ML_DASH_USER_NAME",)


def env_value(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` set (non-empty) in the environment."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """The settings an experiment runs with, after arguments and environment are merged."""

    directory: Path
    remote: str | None
    api_key: str | None
    user_name: str | None

    def __repr__(self) -> str:  # never print the key itself
        key = "set" if self.api_key else None
        return f"ResolvedConfig(directory={self.directory!s}, remote={self.remote!r}, api_key={key}, user_name={self.user_name!r})"


def check_server_url(what: str, url: str) -> str:
    """An http(s) URL with a host; ConfigurationError naming ``what`` otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ConfigurationError(f"{what}={url!r} must be an http:// or https:// URL with a host")
    return url


def check_credentials(api_key: str | None, user_name: str | None) -> None:
    """A key or user name that can go in a header (a control character or a space cannot), never echoed."""
    if api_key is not None and (not isinstance(api_key, str) or not api_key.isprintable() or " " in api_key):
        raise ConfigurationError("api_key must be printable text without spaces (the key as `ml-dash keys create` "
                                 "printed it)")
    if user_name is not None:
        from ..format.naming import validate_prefix

        try:
            validate_prefix(f"{user_name}/p/n")
        except (TypeError, ValueError):
            raise ConfigurationError(f"user_name={user_name!r} must be an owner name: letters, digits, '_', '-', "
                                     "'.'") from None


def run_directory(local_path: Path, prefix: str) -> Path:
    """``local_path`` itself when it already ends with the prefix's three parts, else ``local_path/prefix``."""
    parts = tuple(prefix.split("/"))
    if tuple(local_path.parts[-len(parts):]) == parts:
        return local_path
    return local_path / prefix


def resolve(
    prefix: str,
    *,
    local_path: str | os.PathLike | None,
    dash_root: str | os.PathLike | None,
    remote: str | None,
    dash_url: str | None,
    api_key: str | None,
    user_name: str | None,
) -> ResolvedConfig:
    """Merge arguments, upstream aliases and environment into one :class:`ResolvedConfig`."""
    if local_path is not None and dash_root is not None:
        raise ConfigurationError("pass either local_path (the experiment's directory) or dash_root (a root), not both")
    if remote is not None and dash_url is not None and remote != dash_url:
        raise ConfigurationError(f"remote={remote!r} and dash_url={dash_url!r} disagree; pass one")
    for label, value in (("local_path", local_path), ("dash_root", dash_root)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{label} must be a str or path, not {type(value).__name__}")
        if value is not None and not os.fspath(value):
            raise ValueError(f"{label} is empty; pass a directory, or leave it out for .dash/<prefix>")
    explicit_remote = remote if remote is not None else dash_url
    credentials_given = api_key is not None or user_name is not None
    if explicit_remote is None and credentials_given and env_value(ENV_API_URL) is None:
        raise ConfigurationError("api_key/user_name were given but no remote server (remote= or ML_DASH_API_URL)")

    if local_path is not None:
        directory = run_directory(Path(local_path), prefix)
    elif dash_root is not None:
        directory = Path(dash_root) / prefix
    elif (env_path := env_value(ENV_LOCAL_PATH)) is not None:
        directory = Path(env_path) / prefix
    else:
        directory = Path(".dash") / prefix

    resolved_remote = explicit_remote if explicit_remote is not None else env_value(ENV_API_URL)
    config = ResolvedConfig(
        directory=directory.absolute(),
        remote=resolved_remote or None,
        api_key=api_key if api_key is not None else env_value(ENV_API_KEY),
        user_name=user_name if user_name is not None else env_value(ENV_USER_NAME),
    )
    if config.remote is not None:
        check_server_url("remote", config.remote)
        check_credentials(config.api_key, config.user_name)
        if not config.api_key and not config.user_name:
            raise ConfigurationError(f"remote mode ({config.remote}) needs api_key= (or ML_DASH_API_KEY / "
                                     "DREAMLAKE_API_KEY) or user_name=")
    return config
