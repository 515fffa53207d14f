"""Provenance (ml_dash/capture/provenance.py, git.py; docs/capture.md): where a run came from, in its
metadata and two files, never an environment value, git read with timeouts and skipped silently without it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ml_dash.capture import git as git_module
from ml_dash.capture.git import git_state, strip_credentials
from ml_dash.capture.provenance import installed_packages, redact_argv

from .conftest import python_script

SECRET = "s3cr3t-value-never-recorded"

RUN = """
import sys
from ml_dash import Experiment
exp = Experiment("a/b/prov", system_metrics=False, console=False)
with exp.run:
    pass
"""


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def dirty_repo(workdir: Path) -> Path:
    """A repository with one commit on ``main``, a remote URL holding a token, a changed tracked file
    and an untracked one."""
    _git(workdir, "init", "-q", "-b", "main")
    (workdir / "train.py").write_text("lr = 0.1\n")
    _git(workdir, "add", "train.py")
    _git(workdir, "commit", "-q", "-m", "first")
    _git(workdir, "remote", "add", "origin", f"https://alice:{SECRET}@git.example.com/alice/proj.git?x={SECRET}")
    (workdir / "train.py").write_text("lr = 0.01  # changed token-D1\n")
    (workdir / "notes.txt").write_text("untracked\n")
    return workdir


def _run(directory: Path) -> tuple[dict[str, Any], Path]:
    run = directory / ".dash/a/b/prov"
    return json.loads((run / "experiment.json").read_text())["metadata"]["provenance"], run


def test_a_dirty_tree_is_recorded_with_its_diff_and_no_credentials_or_environment_value(
        dirty_repo: Path, capture_on: None) -> None:
    script = dirty_repo / "script.py"
    script.write_text(RUN)
    out = subprocess.run([os.sys.executable, str(script), "--lr", "0.01", f"--api-key={SECRET}", "--token", SECRET],
                         cwd=dirty_repo, env={**os.environ, "MY_SECRET_TOKEN": SECRET}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    provenance, run = _run(dirty_repo)
    git = provenance["git"]
    assert git["commit"] == _git(dirty_repo, "rev-parse", "HEAD") and git["branch"] == "main"
    assert git["remote"] == "https://git.example.com/alice/proj.git"
    assert (git["dirty"], git["untracked_files"], git["diff_truncated"]) == (True, 3, False)  # notes, script, .dash
    diff = (run / "files/provenance/diff.patch").read_text()
    assert "+lr = 0.01  # changed token-D1" in diff and "-lr = 0.1" in diff
    assert git["diff_file"] == "provenance/diff.patch" and git["diff_bytes"] == len(diff.encode())
    assert provenance["command"] == [str(script), "--lr", "0.01", "--api-key=<hidden>", "--token", "<hidden>"]
    assert provenance["cwd"] == str(dirty_repo) and provenance["hostname"] and provenance["python"]["version"]
    requirements = (run / "files/provenance/requirements.txt").read_text().splitlines()
    assert any(line.startswith("ml-dash==") for line in requirements) and provenance["packages"] == len(requirements)
    # no environment value anywhere in the run (the repository's own files aside)
    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.integration  # runs git
def test_untracked_files_alone_leave_the_tree_clean(workdir: Path) -> None:
    _git(workdir, "init", "-q", "-b", "main")
    _git(workdir, "commit", "-q", "--allow-empty", "-m", "first")
    (workdir / ".dash").mkdir()
    (workdir / ".dash/run.json").write_text("{}")  # the run's own directory, not ignored
    fields, diff = git_state(workdir)  # type: ignore[misc]
    assert (fields["dirty"], fields["untracked_files"], diff) == (False, 1, None)


def test_outside_a_repository_or_without_git_the_rest_is_recorded_silently(workdir: Path, capture_on: None) -> None:
    out = python_script(RUN, workdir)
    assert out.returncode == 0 and "ml-dash" not in out.stderr, out.stderr
    provenance, _ = _run(workdir)
    assert "git" not in provenance and provenance["command"] == ["-c"]
    no_git = python_script(RUN.replace("a/b/prov", "a/b/nogit"), workdir, env={"PATH": "/nonexistent"})
    assert no_git.returncode == 0 and "ml-dash" not in no_git.stderr, no_git.stderr


def test_torch_is_never_imported_for_provenance(workdir: Path, capture_on: None) -> None:
    out = python_script(RUN + "\nprint('torch' in sys.modules)\n", workdir)
    assert out.returncode == 0 and out.stdout.strip().endswith("False"), out.stdout + out.stderr
    provenance, _ = _run(workdir)
    assert set(provenance.get("torch", {})) <= {"version"}  # from its distribution's metadata only


def test_provenance_off_records_nothing(workdir: Path, capture_on: None) -> None:
    out = python_script(RUN, workdir, env={"ML_DASH_PROVENANCE": "0"})
    assert out.returncode == 0, out.stderr
    assert json.loads((workdir / ".dash/a/b/prov/experiment.json").read_text())["metadata"] is None
    assert not (workdir / ".dash/a/b/prov/files/provenance").exists()


def test_the_scripts_own_provenance_key_is_kept(workdir: Path, capture_on: None) -> None:
    out = python_script(RUN.replace('console=False)', 'console=False, metadata={"provenance": "mine"})'), workdir)
    assert out.returncode == 0, out.stderr
    doc = json.loads((workdir / ".dash/a/b/prov/experiment.json").read_text())
    assert doc["metadata"] == {"provenance": "mine"}


@pytest.mark.integration  # runs git
def test_a_long_diff_is_cut_and_says_so(dirty_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fields, diff = git_state(dirty_repo, max_diff_bytes=40)  # type: ignore[misc]
    assert diff is not None and len(diff) == 40 and (fields["diff_bytes"], fields["diff_truncated"]) == (40, True)


@pytest.mark.integration  # runs git
def test_a_git_that_hangs_is_given_up_on(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = workdir / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 30\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert git_state(workdir, timeout_s=0.2) is None


@pytest.mark.parametrize("url, stripped", [
    ("https://user:tok@github.com/a/b.git", "https://github.com/a/b.git"),
    ("https://ghp_token@github.com/a/b.git", "https://github.com/a/b.git"),
    ("ssh://git:pw@host:2222/a/b.git", "ssh://host:2222/a/b.git"),
    ("https://host/a/b.git?private_token=x#frag", "https://host/a/b.git"),
    ("git@github.com:a/b.git", "git@github.com:a/b.git"),  # scp-like: an SSH user, never a secret
    ("/srv/repos/b.git", "/srv/repos/b.git"),
])
def test_remote_urls_lose_their_credentials(url: str, stripped: str) -> None:
    assert strip_credentials(url) == stripped


def test_secret_options_are_hidden_and_the_rest_kept() -> None:
    assert redact_argv(["t.py", "--password", "p", "--lr", "1", "--auth-token=x", "-k", "v", "--api_key", "--x"]) == [
        "t.py", "--password", "<hidden>", "--lr", "1", "--auth-token=<hidden>", "-k", "v", "--api_key", "--x"]


@pytest.mark.integration  # runs git
def test_git_runs_without_optional_locks_or_prompts(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    seen: dict[str, str] = {}
    real = subprocess.Popen

    def popen(args: Any, **kwargs: Any) -> Any:
        seen.update({k: v for k, v in kwargs["env"].items() if k.startswith("GIT_")})
        return real(args, **kwargs)

    monkeypatch.setattr(git_module.subprocess, "Popen", popen)
    git_state(workdir)
    assert seen["GIT_OPTIONAL_LOCKS"] == "0" and seen["GIT_TERMINAL_PROMPT"] == "0"


def test_the_packages_file_names_every_installed_distribution_as_its_full_metadata_does() -> None:
    """The headers read from the metadata's first lines give what parsing it whole gives (the first
    distribution of each name on the path, as imports find it)."""
    import importlib.metadata

    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    assert installed_packages() == [seen[k] for k in sorted(seen)]
    assert any(p.startswith(("ml-dash==", "ml_dash==")) for p in installed_packages())
