"""A blob store by URL: ``open_blobs("file:///srv/ml-dash/blobs")``, ``open_blobs("s3://bucket/ml-dash")``.

Supported (:data:`SUPPORTED`): ``file:///ABSOLUTE/DIR``, a plain directory path, and ``s3://BUCKET/PREFIX``
(blobs/s3.py; endpoint, region and credentials from the AWS environment, never from the URL). A blob
backend plugs in here as one more scheme; the routes use only the blob store's methods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..storage.errors import StorageURLError
from ..storage.factory import local_path, scheme_of, shown
from .fs import LocalBlobStore
from .protocol import BlobStore

SUPPORTED = ("file:///ABSOLUTE/DIR", "a plain directory path", "s3://BUCKET/PREFIX")
#: S3's rules for a bucket name (3-63 lowercase letters, digits, dots, hyphens; a letter or digit at each end)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where ``s3://BUCKET/PREFIX`` keeps blobs: ``prefix`` is ``""`` or ends in ``/``."""

    bucket: str
    prefix: str


def blob_dir(url: str) -> Path | None:
    """The directory a ``file:`` URL (or a plain path) names; None for another scheme."""
    return local_path(url, "file", "blob", "file:///ABSOLUTE/DIR (no host, no options)", hosts=("", "localhost"))


def s3_location(url: str) -> S3Location | None:
    """The bucket and prefix an ``s3://`` URL names; None for another scheme. Credentials, a port or
    options in it are a :class:`StorageURLError` (never echoed: they come from the AWS environment)."""
    if scheme_of(url) != "s3":
        return None
    form = "s3://BUCKET/PREFIX (a bucket name, then an optional key prefix; no credentials, port or options)"
    parts = urlsplit(url)
    if "@" in parts.netloc or ":" in parts.netloc or parts.query or parts.fragment:
        raise StorageURLError(f"an s3 blob URL is {form}: credentials and the endpoint come from AWS_* variables "
                              "or a profile")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise StorageURLError(f"{shown(url)}: {parts.netloc!r} is no S3 bucket name; a blob URL is {form}")
    segments = [s for s in unquote(parts.path).split("/") if s]
    if any(s in (".", "..") for s in segments) or "//" in unquote(parts.path).strip("/"):
        raise StorageURLError(f"{shown(url)}: the key prefix has an empty, '.' or '..' segment; a blob URL is {form}")
    return S3Location(parts.netloc, "".join(f"{s}/" for s in segments))


def blob_location(url: str) -> Path | S3Location | None:
    """What a blob URL names (checked, nothing opened); None for a scheme no store takes."""
    return blob_dir(url) or s3_location(url)


async def open_blobs(url: str) -> BlobStore:
    """The blob store ``url`` names, ready (its directories created; for S3, the bucket checked): the
    caller closes it. :class:`StorageURLError` for an unknown scheme (naming it and the supported ones)
    or a bad URL; for S3, :class:`~.errors.BlobConfigError` when credentials or the bucket are refused and
    :class:`~.errors.BlobUnavailable` when the endpoint cannot be reached."""
    location = blob_location(url)
    if location is None:
        raise StorageURLError(f"unsupported blob URL scheme {scheme_of(url)!r} in {shown(url)}; "
                              f"supported: {', '.join(SUPPORTED)}")
    if isinstance(location, S3Location):
        try:
            from .s3 import S3BlobStore  # aiobotocore loads only when it is used
        except ImportError as exc:
            raise StorageURLError(f"s3:// blobs need aiobotocore ({exc.name} is missing): pip install "
                                  "'ml-dash[s3]'") from None
        store = S3BlobStore(location.bucket, location.prefix)
        await store.open()
        return store
    try:
        return LocalBlobStore(location)
    except OSError as exc:
        raise StorageURLError(f"cannot use {location} for blobs: {exc.strerror or exc}") from exc
