"""Reading a server's ``/metrics`` page (Prometheus' text format) in tests."""

from __future__ import annotations

import urllib.error
import urllib.request

from .server_process import direct


def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body text) of a GET of ``url``, with ``Authorization: Bearer token`` when given."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with direct.open(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` in a page (``labels``: all of its labels, in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if part) if label_text else {}
        if metric == name and {k: v.strip('"') for k, v in found.items()} == labels:
            return float(value)
    return None
