"""A misbehaving network between the job and a storage server, on 127.0.0.1.

:class:`FlakyProxy` relays HTTP requests to a real protocol server (the GCS
emulator or moto's S3 server) and, by rule, answers some of them ``503 Slow
Down`` without relaying them, or holds some for a while before relaying them.
The job's real storage clients (gcsfs, s3fs) talk to the proxy as if it were
the service, so retries and slow writes are exercised end to end, with no
mock anywhere in the client.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)


@dataclass
class Faults:
    """Which requests misbehave.

    ``fail_every``: every n-th request of each HTTP method (counting from 1)
    is answered 503, at most ``max_failures`` times per method (0: never).
    Counting per method keeps the faults on reads and on writes alike however
    the client interleaves them across threads. ``delay_if``: requests for
    which it returns True are held ``delay_s`` seconds before they are relayed.
    """

    fail_every: int = 0
    max_failures: int = 0
    delay_if: Callable[[str, str], bool] | None = None  # (method, path) -> hold it?
    delay_s: float = 0.0


@dataclass
class Tally:
    """What the proxy did, for tests to check that the faults really happened."""

    requests: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    delayed: int = 0
    in_flight: int = 0


class FlakyProxy:
    """Start with ``with FlakyProxy(upstream, faults) as proxy:``; ``proxy.endpoint`` is its URL."""

    def __init__(self, upstream: str, faults: Faults):
        self.upstream = urlsplit(upstream)
        self.faults = faults
        self.tally = Tally()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until no request is being relayed (a killed client's last ones included)."""
        deadline = time.monotonic() + timeout_s
        while self.tally.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)

    def decide(self, method: str, path: str) -> str:
        """``"fail"``, ``"delay"`` or ``"relay"`` for the next request."""
        with self.lock:
            self.tally.requests += 1
            seen = self.tally.by_method.get(method, 0) + 1
            self.tally.by_method[method] = seen
            faults = self.faults
            failed_here = sum(f.startswith(f"{method} ") for f in self.tally.failed)
            if (
                faults.fail_every
                and seen % faults.fail_every == 0
                and failed_here < faults.max_failures
            ):
                self.tally.failed.append(f"{method} {path}")
                return "fail"
        if faults.delay_if is not None and faults.delay_if(method, path):
            with self.lock:
                self.tally.delayed += 1
            return "delay"
        return "relay"

    def relay(self, method: str, path: str, headers: dict, body: bytes):
        """Send the request upstream; returns (status, headers, body)."""
        connection = http.client.HTTPConnection(
            self.upstream.hostname, self.upstream.port, timeout=60
        )
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _handler_for(proxy: FlakyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            body = self._body()
            action = proxy.decide(self.command, self.path)
            if action == "fail":
                self._answer(503, [("Content-Type", "application/xml")], _SLOW_DOWN)
                return
            with proxy.lock:
                proxy.tally.in_flight += 1
            try:
                if action == "delay":
                    time.sleep(proxy.faults.delay_s)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if body:
                    headers["Content-Length"] = str(len(body))
                status, reply_headers, reply = proxy.relay(self.command, self.path, headers, body)
            finally:
                with proxy.lock:
                    proxy.tally.in_flight -= 1
            self._answer(status, reply_headers, reply)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._chunked()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _chunked(self) -> bytes:
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()

        def _answer(self, status: int, headers, body: bytes) -> None:
            """Relay a reply; a HEAD reply keeps upstream's Content-Length (the size)."""
            self.send_response(status)
            head = self.command == "HEAD"
            length = str(len(body))
            for name, value in headers:
                lower = name.lower()
                if lower == "content-length" and head:
                    length = value
                elif lower not in HOP_BY_HOP | {"content-length", "server", "date"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
            logger.debug("proxy: " + format, *args)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _any

    return Handler


_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
