"""A folder served over HTTP on 127.0.0.1 to holders of one user name and password.

Shards and bundles are often fetched from HTTP(S) endpoints with the
credentials in the URL (``https://user:password@host/...``). This server lets
the job do exactly that through fsspec's real HTTP client: it answers only
requests carrying the right Basic credentials, and supports HEAD and byte
ranges as storage front ends do, so the job's seekable reads work.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Tally:
    authorised: int = 0
    refused: int = 0


class AuthFileServer:
    """``with AuthFileServer(folder, user, password) as server:``; ``server.port``."""

    def __init__(self, root: Path, user: str, password: str):
        self.root = root.resolve()
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.tally = Tally()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AuthFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def authorised(self, header: str | None) -> bool:
        ok = header == self.expected
        with self.lock:
            if ok:
                self.tally.authorised += 1
            else:
                self.tally.refused += 1
        return ok

    def file_for(self, url_path: str) -> Path | None:
        """The served file a request path names, never anything outside the folder."""
        candidate = (self.root / url_path.split("?", 1)[0].lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a ``Range: bytes=a-b`` header, or None for all."""
    match = _RANGE.match(header or "")
    if not match:
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last N bytes
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last) if last else size - 1, size - 1)


def _handler_for(server: AuthFileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            if not server.authorised(self.headers.get("Authorization")):
                self._reply(401, b"credentials required", {"WWW-Authenticate": "Basic"}, body)
                return
            path = server.file_for(self.path)
            if path is None:
                self._reply(404, b"not found", {}, body)
                return
            data = path.read_bytes()
            span = _byte_range(self.headers.get("Range"), len(data))
            if span is None:
                self._reply(200, data, {"Accept-Ranges": "bytes"}, body)
                return
            first, last = span
            headers = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
            self._reply(206, data[first : last + 1], headers, body)

        def _reply(self, status: int, data: bytes, headers: dict, body: bool) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
            pass  # request lines would show in test output; the tally is what tests read

    return Handler
