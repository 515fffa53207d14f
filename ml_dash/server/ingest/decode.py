"""``POST /api/v1/runs/{owner}/{project}/{name}/events``: a bulk body (ml_dash/format/wire.py) into storage.

The body is decompressed with a cap, checked field by field (every problem a
400 naming it), and stored in one transaction that answers only once
committed. The reply carries the stored counts of the request's streams and
the run's totals (ml_dash/format/wire.py, "Replies": never every stream of the run,
except for an older client on a small run); a batch past the stored rows gets
409 with the same, and rows from another run or another writer under stored
indices get 409 with ``conflict``: the server never acknowledges rows it did
not store.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ml_dash.format.jsonlines import dumps
from ml_dash.format.layout import LOG_STREAM, RUN_FIELDS, metric_name
from ml_dash.format.naming import is_identity, validate_metric_name
from ml_dash.format.values import INT_MAX, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_TEXT_BYTES, check_json, check_text
from ml_dash.format.vocabulary import STATUSES, check_tags, normalise_level
from ml_dash.format.wire import LIMITS, NAMED_REPLY, BodyError, decode_body

from ..errors import BadRequest, PayloadTooLarge, RequestError, UnsupportedEncoding
from ..storage.chunks import prepare_rows
from ..storage.records import IngestBatch

_BODY_ERRORS: dict[int, type[RequestError]] = {413: PayloadTooLarge, 415: UnsupportedEncoding}
MAX_VOID_REASON_CHARS = 200


def parse_body(raw: bytes, content_encoding: str | None, limits: Any) -> dict[str, Any]:
    try:
        return decode_body(raw, content_encoding, limits)
    except BodyError as exc:
        raise _BODY_ERRORS.get(exc.status, BadRequest)(str(exc)) from None


_TIME_CHARS = 64  # an ISO 8601 time


def run_fields(run: dict[Any, Any]) -> dict[str, Any]:
    """The run fields of a body checked as strictly as the SDK checks them at the call (unknown keys are
    ignored, for newer clients); BadRequest naming the field, so that a wrong type is a 400 and never
    reaches the database (where it was a 500, retried by the client until its deadline)."""
    out: dict[str, Any] = {}
    for key in RUN_FIELDS:
        if key not in run:
            continue
        value = run[key]
        try:
            if key == "tags":
                value = check_tags(value)
            elif key == "metadata":
                if value is not None and not isinstance(value, dict):
                    raise TypeError(f"must be a map or nil, not {type(value).__name__}")
                check_json("it", value)
                if value is not None and len(dumps(value)) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"over {MAX_DOCUMENT_BYTES} bytes of JSON")
            elif key == "status":
                if value not in STATUSES:
                    raise ValueError(f"must be one of {', '.join(STATUSES)}")
            elif value is not None:
                limit = _TIME_CHARS if key.endswith("_at") else MAX_TEXT_BYTES
                value = check_text(key, value, limit)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"run.{key}: {exc}") from None
        out[key] = value
    return out


def build_batch(owner: str, project: str, name: str, body: dict[str, Any], max_events: int,
                max_streams: int = LIMITS.max_streams) -> IngestBatch:
    """The validated batch of a decoded body; BadRequest naming the first problem."""
    batch = IngestBatch(owner, project, name)
    identity = body.get("identity")
    if not isinstance(identity, dict):
        raise BadRequest("'identity' must be a map with 'run_id' and 'writer_id'")
    for key in ("run_id", "writer_id"):
        value = identity.get(key)
        if not is_identity(value):
            raise BadRequest(f"identity.{key} must be 1 to 64 letters, digits, '-' or '_'")
    batch.run_id, batch.writer_id = identity["run_id"], identity["writer_id"]
    batch.named_reply = body.get("reply") == NAMED_REPLY["reply"]
    if "docs_rev" in body:
        rev = body["docs_rev"]
        if not _is_count(rev, 0) or rev > INT_MAX:
            raise BadRequest("'docs_rev' must be an int from 0 to 2^63-1")
        batch.docs_rev = rev
    run = body.get("run")
    if run is not None:
        if not isinstance(run, dict):
            raise BadRequest("'run' must be a map")
        batch.run = run_fields(run)
    params = body.get("params")
    if params is not None:
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise BadRequest("'params' must be a map of str keys")
        try:  # the SDK's own check: stored, then read back and encoded as JSON by every reader
            check_json("params", params, MAX_DEPTH + 1)
            if len(dumps(params)) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"params are over {MAX_DOCUMENT_BYTES} bytes of JSON")
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        batch.params = params
    streams = body.get("streams", {})
    if not isinstance(streams, dict):
        raise BadRequest("'streams' must be a map")
    if len(streams) > max_streams:  # before any of them costs anything
        raise PayloadTooLarge(f"{len(streams)} streams in one request; at most {max_streams}: split the batch")
    events = 0
    for stream, payload in streams.items():
        events += _add_stream(batch, stream, payload)
        if events > max_events:
            raise PayloadTooLarge(f"more than {max_events} events in one request; split the batch")
    return batch


def _add_stream(batch: IngestBatch, stream: Any, payload: Any) -> int:
    """Validate one stream's payload into ``batch``; returns its event count."""
    if not isinstance(stream, str):
        raise BadRequest("stream names must be str")
    if not isinstance(payload, dict) or not _is_count(payload.get("start"), 0):
        raise BadRequest(f"stream {stream!r} needs a map with a non-negative int 'start'", stream=stream)
    start = payload["start"]
    if "writer" in payload:
        writer = payload["writer"]
        if not is_identity(writer):
            raise BadRequest(f"the writer of {stream!r} must be 1 to 64 letters, digits, '-' or '_'", stream=stream)
        batch.writers[stream] = writer
    if stream != LOG_STREAM:
        metric = metric_name(stream)
        if metric is None:
            raise BadRequest(f"unknown stream {stream!r}", stream=stream)
        try:
            validate_metric_name(metric)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc), stream=stream) from None
    if "void" in payload:
        count, reason = payload["void"], payload.get("reason", "")
        if not _is_count(count, 1) or not isinstance(reason, str):
            raise BadRequest(f"a void of {stream!r} needs a positive int 'void' and a str 'reason'", stream=stream)
        batch.voids[stream] = (start, count, reason[:MAX_VOID_REASON_CHARS])
        return count
    if stream == LOG_STREAM:
        rows = payload.get("rows")
        if not isinstance(rows, list):
            raise BadRequest("'logs' needs 'rows', a list of maps", stream=stream)
        entries = []
        for k, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest("a log row must be a map", stream=stream, index=start + k)
            try:
                check_json("a log row", row, MAX_DEPTH + 1)
            except (TypeError, ValueError) as exc:
                raise BadRequest(str(exc), stream=stream, index=start + k) from None
            message = row.get("message")
            entries.append((start + k, msgpack.packb({key: v for key, v in row.items() if key != "sequenceNumber"}),
                            _level(row, stream, start + k), message if isinstance(message, str) else str(message)))
        batch.logs = (start, entries)
        return len(rows)
    rows = prepare_rows(start, _checked_blocks(payload.get("blocks"), stream, start))
    batch.metrics[metric_name(stream) or ""] = rows
    return rows.count


def _is_count(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


#: What a metric value may be (ml_dash/format/values.py): msgpack decodes nothing else to these.
_SCALARS = frozenset({int, float, bool, str, type(None)})


def _checked_blocks(blocks: Any, stream: str, start: int) -> list[dict[str, Any]]:
    if not isinstance(blocks, list):
        raise BadRequest(f"{stream!r} needs 'blocks', a list", stream=stream)
    first = start
    for block in blocks:
        if not isinstance(block, dict):
            raise BadRequest(f"malformed block in {stream!r}", stream=stream)
        keys, cols, created = block.get("keys"), block.get("cols"), block.get("created")
        # every row has a field (_ts at least): a block without columns would let a declared count stand
        # for rows that are not there
        if not (isinstance(keys, list) and isinstance(cols, list) and isinstance(created, list) and keys
                and len(keys) == len(cols) and all(isinstance(k, str) for k in keys)):
            raise BadRequest(f"malformed block in {stream!r}", stream=stream)
        count = sum(n for _, n in created) if all(isinstance(c, list) and len(c) == 2 and isinstance(c[1], int)
                                                   and c[1] > 0 for c in created) else -1
        if count < 0 or any(not isinstance(col, list) or len(col) != count for col in cols):
            raise BadRequest(f"block columns of {stream!r} disagree with its row count", stream=stream)
        for key, col in zip(keys, cols):
            if not set(map(type, col)) <= _SCALARS:  # a C loop; the slow search only for the culprit
                position = next(i for i, v in enumerate(col) if type(v) not in _SCALARS)
                raise BadRequest(f"metric field {key[:80]!r} holds a {type(col[position]).__name__}; a metric "
                                 "value is a number, bool, str or nil", stream=stream, index=first + position)
        first += count
    return blocks


def _level(row: dict[str, Any], stream: str, index: int) -> str | None:
    """The row's level, checked as the SDK checks it (absent: None); BadRequest otherwise."""
    if "level" not in row or row["level"] is None:
        return None
    level = row["level"]
    if not isinstance(level, str):
        raise BadRequest(f"a log level must be a str, not {type(level).__name__}", stream=stream, index=index)
    try:
        return normalise_level(level)
    except ValueError as exc:
        raise BadRequest(str(exc), stream=stream, index=index) from None
