"""Where runs are read from: a local ``.dash`` root (the run directories) or an ml-dash server's read API."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .._run.config import ENV_API_KEY, ENV_USER_NAME, check_server_url, env_value
from ..errors import ConfigurationError
from ..format.naming import validate_prefix


@dataclass(frozen=True, slots=True)
class LocalSource:
    root: Path


@dataclass(frozen=True, slots=True)
class ServerSource:
    url: str
    api_key: str | None
    user_name: str | None

    def __repr__(self) -> str:  # never print the key
        return f"ServerSource(url={self.url!r}, api_key={'set' if self.api_key else None}, user_name={self.user_name!r})"


Source = LocalSource | ServerSource


def resolve(source: str | os.PathLike[str], api_key: str | None = None) -> Source:
    """A server for an ``http(s)://`` URL (its key: ``api_key``, else ``ML_DASH_API_KEY``, else a development
    server's ``ML_DASH_USER_NAME``), else a local directory holding runs."""
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        check_server_url("source", text)
        key = api_key or env_value(ENV_API_KEY)
        return ServerSource(text.rstrip("/"), key, None if key else env_value(ENV_USER_NAME))
    if api_key is not None:
        raise ConfigurationError(f"api_key= is for a server; {text!r} is a local directory")
    root = Path(text)
    if not root.is_dir():
        raise ConfigurationError(f"source {text!r} is neither an http(s):// server URL nor a directory of runs")
    return LocalSource(root)


def split_project(project: object) -> tuple[str, str]:
    """``owner/project``, checked as the first two parts of a run's prefix."""
    if not isinstance(project, str) or project.count("/") != 1:
        raise ConfigurationError(f"project must be 'owner/project', not {project!r}")
    try:
        owner, name, _ = validate_prefix(f"{project}/run")
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"project {project!r}: {exc}") from None
    return owner, name
