"""Real GCS and S3 protocol servers on 127.0.0.1, for tests that must not mock storage.

Each server runs in its own process (``gcp-storage-emulator`` for GCS, moto's
server for S3), in memory, bound to the loopback interface on a free port.
Tests reach them through the real gcsfs / s3fs clients: the environment
variables from :func:`gcs_environment` / :func:`s3_environment` make plain
``gs://bucket/x`` and ``s3://bucket/x`` URLs resolve to the servers, which is
all the pipeline ever receives. Worker processes inherit them.

Why separate processes: the servers' own threads then never compete with the
test for the GIL, Beam's multi-process runners can reach them, and their noisy
stderr (harmless ``BrokenPipeError`` tracebacks) goes to a log file that is
shown only when a server fails to start.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
START_ATTEMPTS = 3
# Never send loopback health checks through a proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class ServerProcess:
    """One running protocol server and how to reach it."""

    name: str
    endpoint: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_path.unlink(missing_ok=True)


def free_port() -> int:
    """A port that was free a moment ago (start-up retries cover the rare race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_gcs_server() -> ServerProcess:
    """gcp-storage-emulator in memory; ``GET /`` answers once it is ready."""

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            HOST,
            "--port",
            str(port),
            "--in-memory",
            "-q",
        ]

    return _start("gcs", command, health_path="/")


def start_s3_server() -> ServerProcess:
    """moto's S3 server; ``GET /moto-api/`` answers once it is ready."""

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]

    return _start("s3", command, health_path="/moto-api/")


def gcs_environment(endpoint: str) -> dict[str, str]:
    """Environment that sends every gcsfs client (and plain ``gs://`` URLs) to ``endpoint``."""
    return {"STORAGE_EMULATOR_HOST": endpoint, "NO_GCE_CHECK": "true", **_no_proxy()}


def s3_environment(endpoint: str) -> dict[str, str]:
    """Environment that sends every s3fs client (and plain ``s3://`` URLs) to ``endpoint``."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        **_no_proxy(),
    }


def _no_proxy() -> dict[str, str]:
    """NO_PROXY extended with the loopback host, for clients that honour proxies."""
    current = os.environ.get("NO_PROXY", os.environ.get("no_proxy", ""))
    hosts = ",".join(part for part in (current, HOST, "localhost") if part)
    return {"NO_PROXY": hosts, "no_proxy": hosts}


def clear_client_caches() -> None:
    """Forget cached gcsfs/s3fs instances, so new ones read the current environment."""
    import gcsfs
    import s3fs

    gcsfs.GCSFileSystem.clear_instance_cache()
    s3fs.S3FileSystem.clear_instance_cache()


def create_bucket(protocol: str) -> str:
    """A new, uniquely named bucket on the server the environment points to; its URL."""
    import fsspec

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem(protocol, skip_instance_cache=True)
    fs.mkdir(bucket)
    fs.invalidate_cache()
    return f"{protocol}://{bucket}"


def _start(name: str, command, health_path: str) -> ServerProcess:
    last_error = ""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        log = tempfile.NamedTemporaryFile(prefix=f"{name}-server-", suffix=".log", delete=False)
        process = subprocess.Popen(
            command(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        server = ServerProcess(name, f"http://{HOST}:{port}", process, Path(log.name))
        if _wait_ready(server, health_path):
            logger.info("%s server ready at %s", name, server.endpoint)
            return server
        last_error = Path(log.name).read_text(errors="replace")[-2000:]
        server.stop()
    raise RuntimeError(f"{name} server did not start; last log:\n{last_error}")


def _wait_ready(server: ServerProcess, health_path: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with _DIRECT.open(server.endpoint + health_path, timeout=1) as response:
                response.read()
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False
