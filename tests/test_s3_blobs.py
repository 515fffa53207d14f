"""The S3 blob store's own duties, beyond the blob contract (tests/test_storage_contract.py), against a
real SeaweedFS: an upload invisible under its content key until verified; killed servers' uploads
swept once stale; objects private; credentials, bucket and endpoint checked at open; an unreachable
endpoint is "unavailable" (503 upstream), never "not found"; parts in memory bounded; s3:// URLs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ml_dash.server.blobs import BlobConfigError, BlobUnavailable
from ml_dash.server.blobs import s3 as s3_module
from ml_dash.server.blobs.factory import S3Location, open_blobs, s3_location
from ml_dash.server.blobs.s3 import S3BlobStore
from ml_dash.server.storage.errors import StorageURLError

from .fault_proxy import FaultProxy
from .server_process import direct
from .services.s3 import S3Service

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024


@pytest.fixture
def s3(s3_service: S3Service, monkeypatch: pytest.MonkeyPatch) -> S3Service:
    """The session's S3, found by the store the AWS way (the environment)."""
    for name, value in s3_service.env().items():
        monkeypatch.setenv(name, value)
    return s3_service


def _store(s3: S3Service, **options: Any) -> S3BlobStore:
    location = s3_location(s3.fresh_url())
    assert location is not None
    return S3BlobStore(location.bucket, location.prefix, **options)


def _with_store(store: S3BlobStore, body: Callable[[S3BlobStore], Awaitable[None]]) -> None:
    async def main() -> None:
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


async def _pieces(data: bytes, paused: asyncio.Event | None = None, at: int = 0) -> AsyncIterator[bytes]:
    """``data`` in 1 MiB pieces; with ``paused``, waits for it before the piece at byte ``at``."""
    for start in range(0, len(data), MiB):
        if paused is not None and start == at:
            await paused.wait()
        yield data[start:start + MiB]


async def _uploads(client: Any, bucket: str, key: str) -> list[str]:
    page = await client.list_multipart_uploads(Bucket=bucket, Prefix=key)
    return [u["UploadId"] for u in page.get("Uploads", [])]


def test_an_upload_is_invisible_under_its_content_key_until_verified(s3: S3Service) -> None:
    data = os.urandom(20 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    store = _store(s3)

    async def body(blobs: S3BlobStore) -> None:
        go_on = asyncio.Event()
        put = asyncio.create_task(blobs.put(_pieces(data, go_on, 17 * MiB), sha, 10**9))
        async with s3.client() as client:
            for _ in range(600):  # two parts sent, the third held back: the upload is under way
                if len(await _uploads(client, s3.bucket, blobs.key(sha))) == 1 and not put.done():
                    break
                await asyncio.sleep(0.05)
            assert not await blobs.exists(sha)
            listed = await client.list_objects_v2(Bucket=s3.bucket, Prefix=blobs.keys)
            assert listed.get("KeyCount", 0) == 0
            go_on.set()
            assert await put == len(data)
            assert await blobs.size(sha) == len(data)
            assert await _uploads(client, s3.bucket, blobs.key(sha)) == []  # completed, nothing left over

    _with_store(store, body)


def test_no_multipart_upload_is_left_behind_by_a_refused_broken_or_concurrent_put(s3: S3Service) -> None:
    """An upload that does not end in its object is aborted at once (not left for the stale sweep), and
    of two concurrent puts of one content the one that completes second gives its upload back too."""
    from ml_dash.server.blobs import DigestMismatch

    data = os.urandom(18 * MiB)
    sha = hashlib.sha256(data).hexdigest()

    async def broken() -> AsyncIterator[bytes]:
        async for piece in _pieces(data[:10 * MiB]):
            yield piece
        raise ConnectionResetError("the client went away")

    async def body(blobs: S3BlobStore) -> None:
        async with s3.client() as client:
            with pytest.raises(DigestMismatch):
                await blobs.put(_pieces(data), "e" * 64, 10**9)
            with pytest.raises(ConnectionResetError):
                await blobs.put(broken(), sha, 10**9)
            assert await asyncio.gather(*(blobs.put(_pieces(data), sha, 10**9) for _ in range(2))) == [len(data)] * 2
            assert await _uploads(client, s3.bucket, blobs.keys) == []
            assert await _read_all(blobs, sha) == data

    _with_store(_store(s3), body)


async def _read_all(blobs: S3BlobStore, sha: str) -> bytes:
    return b"".join([piece async for piece in await blobs.open_range(sha)])


def test_uploads_of_killed_servers_are_aborted_once_stale(s3: S3Service) -> None:
    """An uncompleted upload is what a server killed mid-upload leaves: the sweep aborts it once it is
    older than the limit, never a younger one; a store starts a sweep when it opens."""
    fresh = _store(s3)
    sha = "ab" * 32

    async def body(blobs: S3BlobStore) -> None:
        async with s3.client() as client:
            await client.create_multipart_upload(Bucket=s3.bucket, Key=blobs.key(sha))
            assert await blobs.abort_stale_uploads() == 0  # a day is the limit: this one is young
            assert len(await _uploads(client, s3.bucket, blobs.key(sha))) == 1
            eager = S3BlobStore(blobs.bucket, blobs.keys.removesuffix("blobs/"), stale_upload_s=0)
            await eager.open()  # its start-up sweep finds the upload stale
            try:
                for _ in range(200):
                    if not await _uploads(client, s3.bucket, blobs.key(sha)):
                        break
                    await asyncio.sleep(0.05)
                assert await _uploads(client, s3.bucket, blobs.key(sha)) == []
            finally:
                await eager.close()

    _with_store(fresh, body)


def test_objects_are_private(s3: S3Service) -> None:
    data = b"private weights"
    sha = hashlib.sha256(data).hexdigest()
    store = _store(s3)

    async def body(blobs: S3BlobStore) -> None:
        await blobs.put(_pieces(data), sha, 10**9)
        for url in (f"{s3.endpoint}/{s3.bucket}/{blobs.key(sha)}", f"{s3.endpoint}/{s3.bucket}?list-type=2"):
            with pytest.raises(urllib.error.HTTPError) as refused:  # no signature: no access
                await asyncio.to_thread(direct.open, url, None, 10)
            assert refused.value.code == 403

    _with_store(store, body)


@pytest.mark.parametrize("problem", ["secret", "bucket", "credentials"])
def test_open_names_refused_credentials_or_a_missing_bucket_and_never_the_secret(
        s3: S3Service, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3.fresh_url()
    if problem == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + s3.secret_key)
    elif problem == "bucket":
        url = url.replace(s3.bucket, "no-such-bucket-here")
    else:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BlobConfigError) as refused:
        asyncio.run(open_blobs(url))
    said = str(refused.value)
    assert {"secret": "refused these credentials", "bucket": "no bucket 'no-such-bucket-here'",
            "credentials": "no S3 credentials"}[problem] in said
    assert s3.secret_key not in said


def test_an_unreachable_endpoint_is_unavailable_at_open_and_mid_run(s3: S3Service,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Never "not found" (a 404 would tell the client the file is gone): unavailable (503, retried),
    at open and for every operation while the endpoint is away; all well once it is back."""
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    proxy = FaultProxy(int(s3.endpoint.rsplit(":", 1)[1]))
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setattr(s3_module, "CLIENT_CONFIG", s3_module.CLIENT_CONFIG.merge(
            s3_module.AioConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)))
        proxy.mode = "down"
        with pytest.raises(BlobUnavailable):
            asyncio.run(open_blobs(s3.fresh_url()))
        proxy.mode = "pass"

        async def body(blobs: S3BlobStore) -> None:
            await blobs.put(_pieces(data), sha, 10**9)
            proxy.mode = "down"
            for operation in (blobs.ping(), blobs.size(sha), blobs.exists(sha), blobs.open_range(sha),
                              blobs.put(_pieces(data), "cd" * 32, 10**9), blobs.delete(sha)):
                with pytest.raises(BlobUnavailable):
                    await operation
            proxy.mode = "pass"
            assert await blobs.size(sha) == len(data)

        _with_store(_store(s3), body)
    finally:
        proxy.close()


def test_parts_held_in_memory_are_bounded_and_an_upload_past_them_is_unavailable(
        s3: S3Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "PART_WAIT_S", 0.5)
    data = os.urandom(3 * MiB)
    store = _store(s3, parts_in_memory=1)

    async def body(blobs: S3BlobStore) -> None:
        go_on = asyncio.Event()
        first = asyncio.create_task(blobs.put(_pieces(data, go_on, MiB), hashlib.sha256(data).hexdigest(), 10**9))
        await asyncio.sleep(0.1)  # the first holds the one part's room, waiting for its client
        with pytest.raises(BlobUnavailable, match="busy"):
            await blobs.put(_pieces(b"x"), hashlib.sha256(b"x").hexdigest(), 10**9)
        go_on.set()
        assert await first == len(data)
        assert await blobs.put(_pieces(b"x"), hashlib.sha256(b"x").hexdigest(), 10**9) == 1  # room again

    _with_store(store, body)


def test_s3_urls_name_a_bucket_and_a_prefix_and_never_carry_credentials() -> None:
    assert s3_location("s3://my-bucket") == S3Location("my-bucket", "")
    assert s3_location("s3://my-bucket/") == S3Location("my-bucket", "")
    assert s3_location("s3://my.bucket-1/team/ml-dash/") == S3Location("my.bucket-1", "team/ml-dash/")
    assert s3_location("file:///srv/blobs") is None
    for bad in ("s3://AKIA:topsecret@bucket/p", "s3://bucket:9000/p", "s3://bucket/p?region=x"):
        with pytest.raises(StorageURLError) as refused:
            s3_location(bad)
        assert "topsecret" not in str(refused.value) and "AWS_" in str(refused.value)
    for bad in ("s3://Bad_Bucket/p", "s3://ab/p", "s3://bucket/a/../b", "s3://bucket/a//b", "s3:///p"):
        with pytest.raises(StorageURLError, match="s3://BUCKET/PREFIX"):
            s3_location(bad)
