"""Starting the ml-dash run behind ``wandb.init``: which prefix, which directory, which server, and
what a resumed run continues from (its config, its summary, its next step).

Online mode writes the run directory and uploads it to the server (``ML_DASH_API_URL``, or
``wandb.login(host=)``; the key from ``ML_DASH_API_KEY`` or ``wandb.login(key=)``). Offline mode is
ml-dash's local mode, even when a server is configured (``ml-dash sync`` uploads it later).

A resumed run continues at the step after the last one its directory holds (the last row of each
metric stream, and the summary file). A run continued on another machine from the server's rows
alone (a fresh directory) starts its steps from the summary file's, or 0: ``_step`` is then not
monotonic across the two machines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import ConfigurationError, RunConflictError
from ..experiment import Experiment
from ..format.jsonlines import read_json
from ..format.layout import FILES_DIR, METRIC_DATA, METRICS_DIR, metric_metadata_path
from ..metrics import read_metric_rows
from ._keys import STEP_FIELD
from ._run import Run
from ._settings import InitSettings, capture_options, generated_name, numbered
from ._summary import SUMMARY_FILE, SUMMARY_STREAM

#: Names tried when the one asked for is taken (``name``, ``name-2``, ...) or a drawn one collides.
MAX_NAME_ATTEMPTS = 20


def start(settings: InitSettings, *, server: str | None, api_key: str | None, config: dict[str, Any],
          on_finish: Callable[[Run], None]) -> Run:
    """Start the run ``settings`` describe (its Experiment running) and return it."""
    if settings.mode == "disabled":
        disabled = Run(settings, None, on_finish=on_finish)
        disabled.config.update(config)  # made JSON-friendly, as a recorded run's config is
        return disabled
    if settings.mode == "online" and not server:
        raise ConfigurationError("wandb.init(mode='online') needs an ml-dash server: set ML_DASH_API_URL (and "
                                 "ML_DASH_API_KEY), or call wandb.login(host=..., key=...), or use mode='offline'")
    experiment, settings = _started(settings, server if settings.mode == "online" else None, api_key)
    step, summary = _continued(experiment)
    run = Run(settings, experiment, start_step=step, config=experiment.params.get(flatten=False), summary=summary,
              url=_url(server, settings.prefix) if settings.mode == "online" else None, on_finish=on_finish)
    try:
        run.config.update(config, allow_val_change=True)  # init's config wins over a resumed run's
    except BaseException as exc:
        run._end("fail", exc)
        raise
    return run


def _started(settings: InitSettings, server: str | None, api_key: str | None) -> tuple[Experiment, InitSettings]:
    """A running Experiment; a taken name is numbered (or drawn again) unless the run is to be continued."""
    # a drawn name never continues a run (a collision is someone else's run); a given name without resume
    # or id is a new run, as in W&B, so a taken one is numbered
    renames = not settings.name_given or (settings.resume is None and settings.id is None)
    attempts = MAX_NAME_ATTEMPTS if renames else 1
    for attempt in range(attempts):
        name = numbered(settings.name, attempt) if settings.name_given else (generated_name() if attempt else
                                                                               settings.name)
        tried = replace(settings, name=name)
        quiet, console = capture_options()
        experiment = Experiment(
            tried.prefix, dash_root=tried.dir, description=tried.notes, tags=tried.tags, metadata=tried.metadata(),
            # "" and not None: offline stays local even when ML_DASH_API_URL is set (ml_dash/_run/config.py)
            remote=server if server else "", api_key=api_key if server else None,
            resume="never" if renames else (tried.resume or "never"), quiet=quiet, console=console)
        try:
            experiment.run.start()
        except RunConflictError:
            if attempt == attempts - 1:
                raise
            continue
        return experiment, tried
    raise AssertionError("unreachable")


def _continued(experiment: Experiment) -> tuple[int, dict[str, Any]]:
    """The next step and the summary of a resumed run (0 and {} for a new one)."""
    directory = experiment.directory
    document = read_json(directory / FILES_DIR / SUMMARY_FILE)
    summary = {k: v for k, v in document.items() if not k.startswith("_")} if isinstance(document, dict) else {}
    last = document.get("_step") if isinstance(document, dict) else None
    steps = [last] if isinstance(last, int) and not isinstance(last, bool) else []
    metrics = directory / METRICS_DIR
    for stream in sorted(p.name for p in metrics.glob("*") if p.is_dir()) if metrics.is_dir() else []:
        row = _last_row(directory, stream)
        value = row.get(STEP_FIELD) if row is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            steps.append(value)
        if stream == SUMMARY_STREAM and not summary:  # ended without its summary file: the explicit values
            for record in read_metric_rows(metrics / stream / METRIC_DATA):
                summary.update({k: v for k, v in record["data"].items() if not k.startswith("_")})
    return (max(steps) + 1 if steps else 0), summary


def _last_row(directory: Any, stream: str) -> dict[str, Any] | None:
    """The data of a metric stream's last row: read from the count its metadata recorded (a crash leaves
    that count behind the file, so everything after it is read too)."""
    metadata = read_json(metric_metadata_path(directory, stream))
    recorded = metadata.get("totalDataPoints") if isinstance(metadata, dict) else None
    start = max(0, recorded - 1) if isinstance(recorded, int) else 0
    rows = read_metric_rows(directory / METRICS_DIR / stream / METRIC_DATA, start_index=start)
    return rows[-1]["data"] if rows else None


def _url(server: str | None, prefix: str) -> str | None:
    from urllib.parse import quote

    return None if not server else f"{server.rstrip('/')}/?run={quote(prefix)}"
