"""The ml-dash command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _make_run(workdir: Path) -> Experiment:
    exp = Experiment(prefix="alice/proj/run-1")
    with exp.run:
        exp.params.set(lr=0.1)
        for i in range(5):
            exp.metrics("train").log(step=i)
        exp.log("hello")
        exp.files("m").save(b"x", "x.bin")
    return exp


def test_ls_lists_runs_with_status_and_counts(workdir: Path) -> None:
    _make_run(workdir)
    out = _cli("ls", cwd=workdir)
    assert out.returncode == 0
    assert "alice/proj/run-1" in out.stdout and "COMPLETED" in out.stdout and "5 rows" in out.stdout


def test_ls_and_show_call_a_running_run_without_a_writer_crashed_and_a_live_one_running(workdir: Path) -> None:
    from .conftest import start_script

    live = start_script("""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="alice/proj/live")
        exp.run.start()
        print("started", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, workdir)
    try:
        assert live.stdout.readline().startswith("started")
        dead = _make_run(workdir).directory / "experiment.json"
        doc = json.loads(dead.read_text())
        doc["status"] = "RUNNING"  # as a kill -9 leaves it
        dead.write_text(json.dumps(doc))
        pulled = workdir / ".dash/alice/proj/pulled"
        pulled.mkdir(parents=True)
        (pulled / "experiment.json").write_text(json.dumps({"prefix": "alice/proj/pulled", "status": "RUNNING"}))
        listing = _cli("ls", cwd=workdir).stdout
        lines = {line.split()[0]: line.split()[1] for line in listing.splitlines()}
        assert lines == {"alice/proj/live": "RUNNING", "alice/proj/run-1": "CRASHED",
                         "alice/proj/pulled": "RUNNING"}, listing  # a pulled run's status is the server's
        assert "[CRASHED]" in _cli("show", str(dead.parent), cwd=workdir).stdout
    finally:
        live.kill()
        live.wait(30)


def test_show_and_check_report_damage(workdir: Path) -> None:
    exp = _make_run(workdir)
    assert _cli("check", cwd=workdir).stdout.strip() == "ok"
    with open(exp.directory / "metrics/train/data.jsonl", "ab") as f:
        f.write(b'{"index":5,"da')
    check = _cli("check", cwd=workdir)
    assert check.returncode == 1 and "torn last line" in check.stdout
    show = _cli("show", str(exp.directory), cwd=workdir)
    assert "metric train: 5 rows" in show.stdout and "damaged" in show.stdout and '"lr": 0.1' in show.stdout


def test_console_script_is_installed(workdir: Path) -> None:
    script = Path(sys.executable).parent / "ml-dash"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("ml-dash ")


def test_show_check_and_ls_of_a_missing_path_fail_naming_it(workdir: Path) -> None:
    for args in (("show", "nope"), ("check", "nope"), ("ls", "nope")):
        out = _cli(*args, cwd=workdir)
        assert out.returncode == 2 and "nope: no such directory" in out.stderr, (args, out.stderr)
    (workdir / "plain").mkdir()
    out = _cli("show", "plain", cwd=workdir)
    assert out.returncode == 2 and "not a run directory" in out.stderr


def test_keys_commands_refuse_a_data_directory_that_holds_no_database_and_create_nothing(workdir: Path) -> None:
    for args in (("list", "--owner", "alice"), ("grant", "--owner", "alice", "--member", "bob"),
                 ("revoke", "0123456789ab")):
        out = _cli("keys", *args, "--data", "typo", cwd=workdir)
        assert out.returncode == 2 and "--data typo: no ml-dash database there" in out.stderr, out.stderr
    assert not (workdir / "typo").exists()
    created = _cli("keys", "create", "--owner", "alice", "--data", "data", cwd=workdir)
    assert created.returncode == 0 and created.stdout.splitlines()[-1].startswith("mld_")
    assert _cli("keys", "list", "--owner", "alice", "--data", "data", cwd=workdir).returncode == 0


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_bad_arguments_get_one_line_errors_not_tracebacks(workdir: Path) -> None:
    cases = [
        (("keys", "create", "--owner", "bad owner", "--data", "d"), "segment 'bad owner'"),
        (("keys", "revoke", "mld_0123456789ab_not-a-real-secret", "--data", "d"), None),
        (("server", "--data", "afile"), "--data afile: not a directory"),
        (("server", "--port", "70000"), "--port 70000 must be within 0..65535"),
        (("sync",), "no server: pass --remote URL or set ML_DASH_API_URL"),
        (("pull", "a/b/c", "--remote", "http://127.0.0.1:1", "--to", "x"), "no credentials"),
        (("pull", "a/b/c", "--remote", "ftp://x", "--user-name", "a", "--to", "x"), "must be an http://"),
    ]
    (workdir / "afile").write_text("")
    _cli("keys", "create", "--owner", "alice", "--data", "d", cwd=workdir)
    for args, message in cases:
        out = _cli(*args, cwd=workdir)
        assert out.returncode in (1, 2) and "Traceback" not in out.stderr, (args, out.stderr)
        if message is not None:
            assert message in out.stderr, (args, out.stderr)
    revoke = _cli("keys", "revoke", "mld_zz_not-a-real-secret", "--data", "d", cwd=workdir)
    assert revoke.returncode == 2 and "not-a-real-secret" not in revoke.stderr  # a mistyped secret is not echoed


def test_a_port_in_use_is_a_clear_error(workdir: Path, app_server) -> None:
    out = _cli("server", "--port", str(app_server.port), "--data", "other", cwd=workdir)
    assert out.returncode == 1 and "address already in use" in out.stderr and "Traceback" not in out.stderr


def test_sync_and_pull_take_the_server_and_the_key_from_the_environment_or_a_key_file(workdir: Path, app_server) -> None:
    key = app_server.key("alice")
    _make_run(workdir)
    env = {"ML_DASH_API_URL": app_server.url, "ML_DASH_API_KEY": key}
    synced = _cli("sync", cwd=workdir, env=env)
    assert synced.returncode == 0 and "6/6 rows and 1 files sent" in synced.stdout, synced.stdout + synced.stderr
    (workdir / "key.txt").write_text(key + "\n")
    pulled = _cli("pull", "alice/proj/run-1", "--remote", app_server.url, "--api-key-file", "key.txt", "--to", "back",
                  cwd=workdir)
    assert pulled.returncode == 0, pulled.stderr
    assert len((workdir / "back/alice/proj/run-1/metrics/train/data.jsonl").read_text().splitlines()) == 5
    assert key not in synced.stdout + synced.stderr + pulled.stdout + pulled.stderr


def test_the_top_level_help_names_every_command_and_every_argument_has_help(workdir: Path) -> None:
    top = _cli("--help", cwd=workdir).stdout
    commands = ["ls", "show", "check", "server", "keys", "archive", "migrate", "sync", "pull"]
    for command in commands:
        assert f"    {command} " in top, command
        text = _cli(command, "--help", cwd=workdir).stdout
        options = [line for line in text.split("options:")[1].splitlines() if line.strip().startswith("-")]
        for line in options:  # an option line either carries its help or is continued on the next line
            follows = text.split(line, 1)[1].splitlines()[1:2]
            assert len(line.split("  ")) > 2 or (follows and follows[0].startswith(" " * 20)), (command, line)


def test_a_mistyped_option_is_said_by_its_command_with_the_option_meant(workdir: Path) -> None:
    for args, usage, hint in ((("ui", "--prot", "80"), "usage: ml-dash ui", "--prot (did you mean --port?)"),
                              (("sync", "--remtoe", "http://x"), "usage: ml-dash sync", "(did you mean --remote?)"),
                              (("ls", "a", "b"), "usage: ml-dash ls", "unrecognized arguments: b")):
        out = _cli(*args, cwd=workdir)
        assert out.returncode == 2 and usage in out.stderr and hint in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_ui_without_a_dash_directory_says_where_runs_are_and_how_to_name_it(workdir: Path) -> None:
    out = _cli("ui", cwd=workdir)
    assert out.returncode == 1 and ".dash does not exist" in out.stderr and "ml-dash ui PATH/.dash" in out.stderr


def test_output_cut_off_by_its_reader_ends_quietly(workdir: Path) -> None:
    # `ml-dash show RUN | head`: the reader leaves after a line; the rest (more than a pipe holds) is not
    # written, and the command stops without a BrokenPipeError traceback, as `cat` does
    exp = Experiment(prefix="alice/proj/wide")
    with exp.run:
        exp.metrics("train").log(step=0, **{f"field_{i}": float(i) for i in range(2000)})
    proc = subprocess.Popen([sys.executable, "-m", "ml_dash.cli", "show", str(exp.directory)], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"alice/proj/wide")
    proc.stdout.close()
    assert proc.wait(60) == 141
    assert b"Traceback" not in proc.stderr.read()
