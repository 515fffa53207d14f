"""Content-addressed blobs in an S3 bucket (``s3://BUCKET/PREFIX``, blobs/factory.py): each distinct file
is one private object, ``PREFIX/blobs/<sha256>``, stored once.

An upload is hashed as it streams in and reaches the content key only once its sha256 matched, so no
reader ever sees a partial or wrong object there (:class:`~.protocol.BlobStore`):

* up to one part (:data:`PART_BYTES`) it is held in memory, then written by one ``PutObject`` with the
  whole content's ``x-amz-checksum-sha256`` (the store itself checks the bytes it got hash to the name)
  and ``If-None-Match: *`` (content already there is left as it is);
* past that it goes up as a multipart upload to the content key, a part at a time, which stays
  invisible until ``CompleteMultipartUpload`` (with ``If-None-Match: *``), sent only once the streamed
  hash matched; any other end (mismatch, too large, the client gone, an error) aborts it. A server
  killed mid-upload leaves an uncompleted upload, invisible; :meth:`S3BlobStore.abort_stale_uploads`
  removes those older than a day, at start and every hour, in a bounded number of pages.

Content already stored is hashed (it must match: a client cannot claim content it does not have)
but not sent again. Parts held in memory are bounded for the whole server (:data:`PARTS_IN_MEMORY`);
an upload that finds no room within :data:`PART_WAIT_S` gets :class:`~.errors.BlobUnavailable` (503).
The client is aiobotocore (asyncio, on aiohttp like the server; the full S3 API: conditional writes,
checksums, multipart). Endpoint, region and credentials come the AWS way: ``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles.
Failures are mapped here (:func:`_mapped`): nothing above parses a botocore error.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .errors import BlobConfigError, BlobNotFound, BlobTooLarge, BlobUnavailable, DigestMismatch
from .fs import check_digest

logger = logging.getLogger("ml_dash.server")

#: An upload up to this size is one PutObject; past it, parts of this size (S3's minimum is 5 MiB;
#: 10,000 parts of 8 MiB cover 78 GiB, past the server's 64 GiB a file; a larger limit grows the part).
PART_BYTES = 8 * 1024 * 1024
MAX_PARTS = 10_000
#: Parts held in memory at once by all uploads of this server (8 x 8 MiB = 64 MiB), and how long an
#: upload waits for room before it is answered 503 (its client's body waits in TCP meanwhile).
PARTS_IN_MEMORY = 8
PART_WAIT_S = 10.0
#: A read hands out pieces of at least this much (aiohttp hands the body over in pieces of 64 KiB or
#: less; one write per piece to the client would cost more than the piece).
READ_PIECE_BYTES = 1024 * 1024
#: Uncompleted multipart uploads older than this are a killed server's: aborted (a 64 GiB upload at
#: 10 MB/s takes two hours); looked for at start and every hour, at most this many pages of 1,000.
STALE_UPLOAD_S = 24 * 3600.0
STALE_SWEEP_EVERY_S = 3600.0
STALE_SWEEP_PAGES = 10
#: Transient failures are retried by botocore (its "standard" mode: 3 attempts, backoff), each
#: connection and read bounded, so a dead endpoint answers 503 in seconds, not minutes.
CLIENT_CONFIG = AioConfig(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                          max_pool_connections=32)
#: Error codes that mean "this server's credentials or bucket are wrong": no retry can help.
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
            "AllAccessDisabled", "403", "NoSuchBucket", "PermanentRedirect", "AuthorizationHeaderMalformed"}
_MISSING = {"NoSuchKey", "NotFound", "404"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """botocore's failures as the blob store's: a missing object is BlobNotFound; anything else, a
    refusal included (credentials rotated under a running server), BlobUnavailable, which the client
    retries. The message names the operation and S3's error code, never a credential."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _MISSING:
            raise BlobNotFound(f"{what}: no such object") from None
        raise BlobUnavailable(f"the object store refused {what} ({code or 'no code'})") from None
    except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
        raise BlobUnavailable(f"the object store cannot be reached for {what} ({type(exc).__name__})") from None


class S3BlobStore:
    """Blobs in ``bucket`` under ``prefix`` (``""`` or ending in ``/``); :meth:`open` before use."""

    def __init__(self, bucket: str, prefix: str, stale_upload_s: float = STALE_UPLOAD_S,
                 parts_in_memory: int = PARTS_IN_MEMORY) -> None:
        self.bucket = bucket
        self.keys = f"{prefix}blobs/"
        self.stale_upload_s = stale_upload_s
        self._parts = asyncio.Semaphore(parts_in_memory)
        self._exit = AsyncExitStack()
        self._client: Any = None
        self._sweeper: asyncio.Task[None] | None = None

    def key(self, sha256: str) -> str:
        return self.keys + check_digest(sha256)

    async def open(self) -> None:
        """Connect and check the bucket is there and ours: :class:`BlobConfigError` naming the problem
        (no credentials, credentials refused, no such bucket), :class:`BlobUnavailable` when the endpoint
        cannot be reached. Then start sweeping stale uploads in the background."""
        try:
            self._client = await self._exit.enter_async_context(
                get_session().create_client("s3", config=CLIENT_CONFIG))
            await self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.keys, MaxKeys=1)
        except NoCredentialsError:
            await self.close()
            raise BlobConfigError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                                  "AWS_PROFILE") from None
        except ClientError as exc:
            await self.close()
            code = _code(exc)
            if code == "NoSuchBucket":
                raise BlobConfigError(f"no bucket {self.bucket!r} at the S3 endpoint") from None
            if code in _REFUSED:
                raise BlobConfigError(f"the S3 endpoint refused these credentials for bucket {self.bucket!r} "
                                      f"({code})") from None
            raise BlobUnavailable(f"the S3 endpoint failed a listing of bucket {self.bucket!r} ({code})") from None
        except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            await self.close()
            raise BlobUnavailable(f"cannot reach the S3 endpoint ({type(exc).__name__}: {exc})") from None
        self._sweeper = asyncio.create_task(self._sweep_stale_uploads(), name="ml-dash-s3-stale-uploads")

    # -- writing ---------------------------------------------------------------------------------
    async def put(self, chunks: AsyncIterable[bytes], sha256: str, max_bytes: int) -> int:
        key = self.key(sha256)
        if await self.exists(sha256):  # hashed all the same: the name must be earned
            size, digest = await _hash_only(chunks, max_bytes)
            _check(digest, sha256)
            return size
        try:
            await asyncio.wait_for(self._parts.acquire(), PART_WAIT_S)
        except asyncio.TimeoutError:
            raise BlobUnavailable("the server is busy: no room for another upload's part in memory") from None
        try:
            return await _Upload(self._client, self.bucket, key, max_bytes).run(chunks, sha256)
        finally:
            self._parts.release()

    # -- reading ---------------------------------------------------------------------------------
    async def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        key = self.key(sha256)
        start = max(0, start)
        if end is not None and end <= start:
            await self.size(sha256)  # nothing to read, but it must be there
            return _ObjectReader(None)
        asked = {} if start == 0 and end is None else {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        try:
            with _mapped(f"a read of {sha256}"):
                try:
                    reply = await self._client.get_object(Bucket=self.bucket, Key=key, **asked)
                except ClientError as exc:
                    if _code(exc) not in ("InvalidRange", "416"):
                        raise
                    return _ObjectReader(None)  # a start at or past the end (of an empty object too): nothing
        except BlobNotFound:
            raise BlobNotFound(f"no content {sha256}") from None
        return _ObjectReader(reply["Body"])

    async def size(self, sha256: str) -> int:
        key = self.key(sha256)
        with _mapped(f"the size of {sha256}"):
            return int((await self._client.head_object(Bucket=self.bucket, Key=key))["ContentLength"])

    async def exists(self, sha256: str) -> bool:
        try:
            await self.size(sha256)
        except BlobNotFound:
            return False
        return True

    async def delete(self, sha256: str) -> bool:
        if not await self.exists(sha256):  # S3 deletes a missing key without saying so
            return False
        with _mapped(f"a delete of {sha256}"):
            await self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        return True

    async def ping(self) -> None:
        """The bucket answers a listing with these credentials (``/ready``). Writes are not probed: a
        balancer checking twice a second would cost a PUT each time; a refused write is a 503 anyway."""
        with _mapped("a listing of the bucket"):
            await self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.keys, MaxKeys=1)

    # -- upkeep ----------------------------------------------------------------------------------
    async def abort_stale_uploads(self) -> int:
        """Abort this store's uncompleted multipart uploads started more than ``stale_upload_s`` ago (a
        killed server's); how many. Bounded: at most :data:`STALE_SWEEP_PAGES` pages a call."""
        cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=self.stale_upload_s)
        aborted, marks = 0, dict[str, str]()
        for _ in range(STALE_SWEEP_PAGES):
            with _mapped("a listing of uploads"):
                page = await self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.keys, **marks)
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    aborted += await _abort(self._client, self.bucket, upload["Key"], upload["UploadId"])
            if not page.get("IsTruncated"):
                break
            marks = {"KeyMarker": page.get("NextKeyMarker", ""), "UploadIdMarker": page.get("NextUploadIdMarker", "")}
        return aborted

    async def _sweep_stale_uploads(self) -> None:
        while True:
            try:
                aborted = await self.abort_stale_uploads()
                if aborted:
                    logger.info("aborted %d stale multipart upload(s) in bucket %s", aborted, self.bucket)
            except BlobUnavailable as exc:  # the next sweep tries again
                logger.warning("sweeping stale multipart uploads failed: %s", exc)
            await asyncio.sleep(STALE_SWEEP_EVERY_S)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self._exit.aclose()


class _Upload:
    """One streamed put: hashed as it comes, a part in memory at a time, visible only once it matched."""

    def __init__(self, client: Any, bucket: str, key: str, max_bytes: int) -> None:
        self.client, self.bucket, self.key, self.max_bytes = client, bucket, key, max_bytes
        self.part_bytes = max(PART_BYTES, -(-max_bytes // MAX_PARTS))
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def run(self, chunks: AsyncIterable[bytes], sha256: str) -> int:
        digest, size, held = hashlib.sha256(), 0, bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise BlobTooLarge(self.max_bytes)
                await asyncio.to_thread(digest.update, chunk)  # hashlib lets go of the GIL meanwhile
                held += chunk
                if len(held) >= self.part_bytes:
                    await self._send_part(bytes(held))
                    held.clear()
            _check(digest.hexdigest(), sha256)
            if self.upload_id is None:
                await self._put_whole(bytes(held), digest.digest())
            else:
                if held or not self.parts:
                    await self._send_part(bytes(held))
                await self._complete()
            return size
        finally:
            if self.upload_id is not None:  # not completed: nothing of it may stay
                await asyncio.shield(_abort(self.client, self.bucket, self.key, self.upload_id))

    async def _put_whole(self, data: bytes, sha256_bytes: bytes) -> None:
        with _mapped(f"a write of {self.key}"):
            await _unless_there(self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*",
                ChecksumSHA256=base64.b64encode(sha256_bytes).decode()))

    async def _send_part(self, data: bytes) -> None:
        with _mapped(f"a write of {self.key}"):
            if self.upload_id is None:
                self.upload_id = (await self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key))["UploadId"]
            number = len(self.parts) + 1
            reply = await self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                                  PartNumber=number, Body=data)
        self.parts.append({"PartNumber": number, "ETag": reply["ETag"]})

    async def _complete(self) -> None:
        with _mapped(f"a write of {self.key}"):
            if await _unless_there(self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, IfNoneMatch="*",
                MultipartUpload={"Parts": self.parts})):
                self.upload_id = None  # completed; else the same content was there first: this one is aborted


async def _unless_there(write: Any) -> bool:
    """Await a conditional write (``If-None-Match: *``): whether it wrote. An object already under the
    key holds the same content (the key is its hash), so "precondition failed" is success too, and so
    is a concurrent write of the same key (409)."""
    try:
        await write
    except ClientError as exc:
        if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            raise
        return False
    return True


async def _abort(client: Any, bucket: str, key: str, upload_id: str) -> int:
    """Abort a multipart upload (1), or find it gone already (0); failures are logged: the sweep of
    stale uploads finishes what this could not."""
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if _code(exc) in ("NoSuchUpload", "404"):
            return 0
        logger.warning("could not abort an upload of %s (%s); the stale-upload sweep will", key, _code(exc))
        return 0
    except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
        logger.warning("could not abort an upload of %s (%s); the stale-upload sweep will", key, type(exc).__name__)
        return 0
    return 1


async def _hash_only(chunks: AsyncIterable[bytes], max_bytes: int) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise BlobTooLarge(max_bytes)
        await asyncio.to_thread(digest.update, chunk)
    return size, digest.hexdigest()


def _check(digest: str, sha256: str) -> None:
    if digest != sha256:
        raise DigestMismatch(f"content sha256 {digest} does not match the declared {sha256}")


class _ObjectReader(AsyncGenerator[bytes, None]):
    """An object's bytes from an open GET, in pieces of at least :data:`READ_PIECE_BYTES` (the last may be
    shorter); ``aclose`` releases the connection, also when no piece was ever asked for (which an async
    generator function would not: its ``finally`` runs only once it started)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    async def __anext__(self) -> bytes:
        if self._body is None:
            raise StopAsyncIteration
        piece = bytearray()
        while len(piece) < READ_PIECE_BYTES:
            with _mapped("a read"):
                more = await self._body.read(READ_PIECE_BYTES - len(piece))
            if not more:
                break
            piece += more
        if not piece:
            await self.aclose()
            raise StopAsyncIteration
        return bytes(piece)

    async def asend(self, value: None) -> bytes:
        return await self.__anext__()

    async def athrow(self, *args: Any) -> bytes:
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self
