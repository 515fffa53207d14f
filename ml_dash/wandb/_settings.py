"""What ``wandb.init(...)`` arguments and W&B's environment variables mean for an ml-dash run.

Each setting, first match wins: the ``wandb.init`` argument, then W&B's environment variable, then
the default.

==============  ===================  ========================================================================
argument        environment          default
==============  ===================  ========================================================================
``mode``        ``WANDB_MODE``       ``"online"`` when a server is configured (``ML_DASH_API_URL`` or
                                     ``wandb.login(host=)``), else ``"offline"``; ``WANDB_DISABLED=true``
                                     means ``"disabled"``. ``"dryrun"`` is ``"offline"``, ``"run"`` ``"online"``
``entity``      ``WANDB_ENTITY``     ``ML_DASH_USER_NAME``; online, the API key's owner (_owner.py); else
                                     the login name (``getpass``), else ``local``
``project``     ``WANDB_PROJECT``    ``uncategorized`` (W&B's default)
``name``        ``WANDB_NAME``       the ``id``, else a W&B-style ``adjective-noun-N``
``id``          ``WANDB_RUN_ID``     the name
``dir``         ``WANDB_DIR``        ``ML_DASH_LOCAL_PATH``, else ``./.dash``; the run is ``dir/entity/project/name``
``resume``      ``WANDB_RESUME``     none
``group``       ``WANDB_RUN_GROUP``  none (kept in the run's metadata, as ``job_type`` is)
``job_type``    ``WANDB_JOB_TYPE``   none
``tags``        ``WANDB_TAGS``       none (comma-separated in the variable)
``notes``       ``WANDB_NOTES``      none (the run's description)
==============  ===================  ========================================================================

``entity/project/name`` is the run's prefix, so a name is unique within its project. A name given
without ``resume`` that is already taken gets ``-2``, ``-3``... (W&B names need not be unique; a
script run twice makes two runs); with ``resume`` or an ``id`` the prefix is the run to continue.
"""

from __future__ import annotations

import getpass
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError

MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}
#: W&B's resume values and the ml-dash policy each means (ml_dash/_run/resume.py).
RESUME = {None: None, False: None, "never": "never", True: "allow", "auto": "allow", "allow": "allow",
          "must": "must"}
DEFAULT_PROJECT = "uncategorized"
_SEGMENT_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True, slots=True)
class InitSettings:
    """One ``wandb.init`` call's settings, resolved."""

    mode: str  # online, offline or disabled
    entity: str
    project: str
    name: str
    name_given: bool  # False: generated, so a taken one is replaced by another
    id: str | None
    dir: str | None
    resume: str | None  # the ml-dash policy: None, "allow", "must", "never"
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None

    @property
    def prefix(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    def metadata(self) -> dict[str, Any] | None:
        """What the run's metadata records of W&B's settings (only those given): ``{"wandb": {...}}``."""
        found = {"id": self.id, "group": self.group, "job_type": self.job_type}
        given = {k: v for k, v in found.items() if v is not None}
        return {"wandb": given} if given else None


def resolve(*, mode: str | None, entity: str | None, project: str | None, name: str | None, run_id: str | None,
            dir: str | os.PathLike | None, resume: Any, tags: Any, notes: str | None, group: str | None,
            job_type: str | None, server_configured: bool,
            server_owner: Callable[[], str | None] = lambda: None) -> InitSettings:
    """Merge ``wandb.init``'s arguments with W&B's environment variables (the table above);
    ``server_owner`` is asked for the entity online when nothing names it."""
    env = os.environ.get
    resolved_mode = _mode(mode, server_configured)
    entity = entity or env("WANDB_ENTITY") or env("ML_DASH_USER_NAME") or None
    if entity is None and resolved_mode == "online":
        entity = server_owner()
    run_id = run_id or env("WANDB_RUN_ID") or None
    name = name or env("WANDB_NAME") or None
    given = name or run_id
    resume_policy = _resume(resume if resume is not None else env("WANDB_RESUME"))
    if resume_policy in ("allow", "must") and given is None and resume not in (True, "auto"):
        raise ConfigurationError(f"wandb.init(resume={resume!r}) needs the run to continue: pass id= or name=")
    directory = dir if dir is not None else env("WANDB_DIR")
    return InitSettings(
        mode=resolved_mode,
        entity=entity or default_entity(),
        project=project or env("WANDB_PROJECT") or DEFAULT_PROJECT,
        name=given or generated_name(),
        name_given=given is not None,
        id=run_id,
        dir=None if directory is None else os.fspath(directory),
        resume=resume_policy,
        tags=_tags(tags if tags is not None else env("WANDB_TAGS")),
        notes=notes if notes is not None else env("WANDB_NOTES"),
        group=group or env("WANDB_RUN_GROUP") or None,
        job_type=job_type or env("WANDB_JOB_TYPE") or None,
    )


def capture_options() -> tuple[bool | None, bool | None]:
    """``(quiet, console)`` for the run's ``Experiment`` from W&B's switches: ``WANDB_SILENT=true`` prints no
    start line, ``WANDB_CONSOLE=off`` keeps no console. None where a switch is unset: then ml-dash's own
    (``ML_DASH_QUIET``, ``ML_DASH_CONSOLE``) decide."""
    quiet = True if os.environ.get("WANDB_SILENT", "").lower() in ("true", "1", "yes") else None
    console = False if os.environ.get("WANDB_CONSOLE", "").lower() == "off" else None
    return quiet, console


def _mode(mode: str | None, server_configured: bool) -> str:
    if mode is None:
        if os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
            return "disabled"
        mode = os.environ.get("WANDB_MODE") or None
    if mode is None:
        return "online" if server_configured else "offline"
    if mode not in MODES:
        raise ConfigurationError(f"wandb.init(mode={mode!r}): use 'online', 'offline' or 'disabled'")
    return MODES[mode]


def _resume(resume: Any) -> str | None:
    if isinstance(resume, str) and resume.lower() in ("true", "false"):  # WANDB_RESUME=true
        resume = resume.lower() == "true"
    if resume not in RESUME:
        raise ConfigurationError(f"wandb.init(resume={resume!r}): use 'allow', 'must', 'never', 'auto', True or False")
    return RESUME[resume]


def _tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        return [t.strip() for t in tags.split(",") if t.strip()]
    return list(tags)


def default_entity() -> str:
    """The login name made a valid prefix part, else ``local``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container with an unknown uid)
        return "local"
    cleaned = _SEGMENT_BAD.sub("-", user).lstrip(".-")
    return cleaned[:64] or "local"


_ADJECTIVES = (
    "amber", "ancient", "autumn", "billowing", "bold", "brisk", "calm", "celestial", "clear", "cosmic", "crimson",
    "curious", "dainty", "dashing", "dawn", "deep", "driven", "dry", "eager", "earnest", "electric", "fallen",
    "fancy", "fiery", "floral", "fresh", "gentle", "glamorous", "golden", "graceful", "hardy", "hopeful", "icy",
    "jolly", "lilac", "lively", "lucky", "lunar", "misty", "morning", "noble", "olive", "polar", "proud", "quiet",
    "radiant", "rosy", "royal", "rural", "sandy", "serene", "silver", "smart", "snowy", "solar", "spring", "stellar",
    "still", "summer", "sunny", "swift", "twilight", "vibrant", "vivid", "wandering", "warm", "wild", "winter",
)
_NOUNS = (
    "bird", "blaze", "breeze", "brook", "bush", "butterfly", "cherry", "cloud", "comet", "dawn", "deluge", "dew",
    "disco", "dream", "dust", "elevator", "field", "fire", "firefly", "flower", "fog", "forest", "frost", "galaxy",
    "glade", "glitter", "grass", "haze", "hill", "lake", "leaf", "meadow", "moon", "morning", "mountain", "night",
    "oath", "ocean", "paper", "pine", "planet", "pond", "rain", "resonance", "river", "sea", "shadow", "sky",
    "smoke", "snow", "sound", "sky", "spaceship", "star", "sun", "sunset", "surf", "terrain", "thunder", "tree",
    "violet", "voice", "water", "wave", "wind", "wildflower", "wood",
)


def generated_name() -> str:
    """A W&B-style run name, ``adjective-noun-N`` (N random: a name taken already is drawn again)."""
    rng = random.SystemRandom()  # not the user's seeded ``random``: seeded jobs would all draw the same name
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(1, 9999)}"


def numbered(name: str, attempt: int) -> str:
    """The name to try on the ``attempt``-th collision: ``name-2``, ``name-3``..."""
    return name if attempt == 0 else f"{name}-{attempt + 1}"
