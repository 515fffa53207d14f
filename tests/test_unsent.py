"""What the end of a run and ``ml-dash sync`` say about rows left behind: every reason, and per reason what
would send them (ml_dash/remote/unsent.py). Rows of streams the server refused to start because the run
would pass its limit of metrics are refused by every resend until that limit is raised: the end of such a
run said "Send them with: ml-dash sync ...", which could not help."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.agent.upload.retry import StopReason
from ml_dash.agent.upload.uploader import UploadReport
from ml_dash.remote.unsent import sync_command, unsent_message

from .server_process import Server

USER = {"X-ML-Dash-User": "alice"}
PREFIX = "alice/proj/run"
COMMAND = sync_command(Path("/runs/run"), "http://server", None, "alice")
RESEND = f"Send them with:\n    {COMMAND}"
AFTER_FIX = f"Once that is fixed, send them with:\n    {COMMAND}"


def _message(report: UploadReport | None) -> str:
    return unsent_message(report, PREFIX, "http://server", Path("/runs/run"), COMMAND)


def _held_back(streams: int, limit: int | None = 5, **fields: object) -> UploadReport:
    names = {f"metrics/m{k}": "HTTP 422: a run holds at most 5 metrics" for k in range(streams)}
    return UploadReport(held_back=names, held_back_rows=2 * streams, stream_limit=limit,
                        pending_rows=int(fields.pop("pending_rows", 2 * streams)), **fields)  # type: ignore[arg-type]


# -- each reason's message ------------------------------------------------------------------------

@pytest.mark.parametrize(("report", "why", "what_to_do"), [
    (None, "the upload did not end in time", RESEND),
    (UploadReport(pending_rows=3, unreachable=True, reason="connection refused"), "the server is unreachable", RESEND),
    (UploadReport(pending_rows=3, out_of_time=True), "the deadline passed while sending", RESEND),
    (UploadReport(pending_rows=3), "not acknowledged yet", RESEND),
    (UploadReport(pending_rows=3, stopped=StopReason.AUTH, reason="HTTP 401"), "refused the credentials", AFTER_FIX),
    (UploadReport(pending_rows=3, stopped=StopReason.FORBIDDEN, reason="HTTP 403"), "may not write there", AFTER_FIX),
    (UploadReport(pending_rows=3, stopped=StopReason.REJECTED, reason="HTTP 400: bad"), "rejected the upload", AFTER_FIX),
    (UploadReport(pending_rows=3, stopped=StopReason.INVALID, reason="not ml-dash"), "cannot be sent as it is", AFTER_FIX),
    (UploadReport(pending_rows=3, stopped=StopReason.STUCK, reason="HTTP 400 6 times"), "made no progress", AFTER_FIX),
    (UploadReport(pending_rows=0, refused_documents="HTTP 400: params too odd"), "fields or parameters", AFTER_FIX),
    (UploadReport(pending_files=1, refused_files=[("big.bin", "HTTP 413: over 1 GiB")]), "refused 1 file(s), big.bin",
     AFTER_FIX),
])
def test_a_reason_a_resend_can_help_says_the_sync_command(report: UploadReport | None, why: str, what_to_do: str) -> None:
    message = _message(report)
    assert why in message and message.endswith(what_to_do), message
    assert "--max-metrics-per-run" not in message


def test_another_run_under_the_prefix_says_a_new_name_or_after_its_rows() -> None:
    message = _message(UploadReport(pending_rows=3, stopped=StopReason.CONFLICT, reason="HTTP 409: another run"))
    assert "the server holds another run under this prefix" in message
    assert message.endswith(f"Send them under a new name, or after the server's rows:\n    {COMMAND} --prefix "
                            f"alice/proj/<new-name>\n    {COMMAND} --resume"), message


def test_rows_the_server_lost_say_a_new_name_only() -> None:
    message = _message(UploadReport(pending_rows=3, stopped=StopReason.LOST, reason="it holds 2 of 10"))
    assert message.endswith(f"Send them under a new name:\n    {COMMAND} --prefix alice/proj/<new-name>"), message


def test_streams_past_the_servers_metric_limit_say_that_sync_will_not_help_unless_it_is_raised() -> None:
    message = _message(_held_back(4))
    assert "Send them with" not in message and "Once that is fixed" not in message, message
    assert ("the server refused to start 4 metric stream(s) (metrics/m0, metrics/m1, metrics/m2 and 1 more): the run "
            "would pass its limit of 5 metrics a run; their 8 row(s) stay on disk") in message
    assert message.endswith("`ml-dash sync` will not send the rows of the streams the server refused to start unless "
                            "its limit of metrics a run is raised (`ml-dash server --max-metrics-per-run`, now 5); once "
                            f"it is:\n    {COMMAND}"), message


def test_streams_past_the_limit_and_rows_of_another_reason_each_say_their_own_remedy() -> None:
    message = _message(_held_back(2, pending_rows=10, unreachable=True, reason="connection refused"))
    assert "the server is unreachable: connection refused; the server refused to start 2 metric stream(s)" in message
    assert f"Send the other rows with:\n    {COMMAND}\n`ml-dash sync` will not send" in message, message
    more = _message(_held_back(2, pending_rows=10))  # more rows pending than the held-back streams', no other cause
    assert "not acknowledged yet" in more and "Send the other rows with:" in more, more


def test_a_refusal_that_names_no_limit_quotes_the_server() -> None:
    message = _message(_held_back(1, limit=None))
    assert "(metrics/m0): HTTP 422: a run holds at most 5 metrics" in message and "now " not in message, message


# -- the same, end to end: a real server's limit, a run's end, then ml-dash sync ------------------

def test_the_end_of_a_run_past_the_servers_metric_limit_and_sync_say_what_sends_its_rows(
        workdir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name", "--max-metrics-per-run", "5")
    try:
        exp = Experiment(prefix=PREFIX, remote=srv.url, user_name="alice", upload_timeout_s=10)
        with caplog.at_level(logging.WARNING, logger="ml_dash"):
            exp.run.start()
            for m in range(8):
                exp.metrics(f"m{m}").log(v=m)
            assert exp.run.complete() is False
        end = caplog.text
        assert "3 event(s) of alice/proj/run are not on" in end, end
        assert "refused to start 3 metric stream(s)" in end and "limit of 5 metrics a run" in end, end
        assert "will not send" in end and "--max-metrics-per-run`, now 5" in end, end
        assert "Send them with" not in end, end  # a resend cannot help
        sync = [sys.executable, "-m", "ml_dash.cli", "sync", str(exp.directory), "--remote", srv.url, "--user-name", "alice"]
        out = subprocess.run(sync, capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "3 rows and 0 files still pending" in out.stdout and "limit of 5 metrics a run" in out.stdout, out.stdout
        assert "will not send" in out.stdout and "--max-metrics-per-run`, now 5" in out.stdout, out.stdout
    finally:
        srv.stop()
    # and what it says is true: with the limit raised, the same command sends them
    raised = Server(tmp_path / "data", "--allow-user-name", "--max-metrics-per-run", "10", port=srv.port)
    try:
        out = subprocess.run(sync, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert len(raised.document(PREFIX, headers=USER)[1]["streams"]) == 8
    finally:
        raised.stop()
