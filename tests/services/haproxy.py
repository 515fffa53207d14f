"""haproxy in front of several server instances, as a load balancer would be: HTTP mode, round robin
per request (a keep-alive client's requests alternate between instances, so a retried request lands
on the other one), health-checked on ``/ready`` every 500 ms, an instance marked down after 2 failed
checks. Foreground (``-db``), bound to 127.0.0.1, stopped by its PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from . import free_port, missing

HAPROXY = "/usr/sbin/haproxy"


def _config(port: int, upstreams: list[int]) -> str:
    servers = "\n".join(f"    server s{k} 127.0.0.1:{p} check inter 500ms fall 2 rise 1" for k, p in enumerate(upstreams))
    return f"""global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 2
    option redispatch
frontend ml_dash
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    # HTTP/1.1 with a loopback Host: a server bound to loopback answers no other name (DNS rebinding)
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host 127.0.0.1
{servers}
"""


class Haproxy:
    """haproxy on 127.0.0.1:``port`` balancing over the instances listening on ``upstreams``."""

    def __init__(self, workdir: Path, upstreams: list[int]) -> None:
        binary = HAPROXY if Path(HAPROXY).exists() else shutil.which("haproxy")
        if binary is None:
            missing("haproxy", "apt-get install -y haproxy")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = Path(workdir) / "haproxy.cfg"
        config.write_text(_config(self.port, upstreams))
        self.proc = subprocess.Popen([str(binary), "-db", "-f", str(config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.proc.communicate()[0]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("haproxy did not listen within 30 s")

    def stop(self) -> str:
        """Stop it; what it printed."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        return out
