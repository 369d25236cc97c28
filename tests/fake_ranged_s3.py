"""A one-object S3 stand-in that answers HeadObject and ranged GetObject over keep-alive and can cut a body
short: moto cannot be made to send fewer bytes than its Content-Length promises, which is the fault the
download tests need (a reset mid-part). Subclasses say which GETs are cut (``should_cut``)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class RangedObject(BaseHTTPRequestHandler):
    """The object is the class's ``body``; a cut GET sends half its part, then closes the connection."""

    protocol_version = "HTTP/1.1"
    body = b""
    cut_at = 0
    sha_meta = True  # False: an object with no jobsub SHA-256 (and a multipart ETag): checked by size only

    def log_message(self, *args: object) -> None:
        pass

    def should_cut(self, first: int) -> bool:
        """Whether the GET of the range starting at ``first`` is cut (its class state may count it)."""
        return False

    def _headers(self, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef-3"')
        self.send_header("Last-Modified", "Mon, 30 Nov 2026 10:00:00 GMT")
        if type(self).sha_meta:
            self.send_header("x-amz-meta-jobsub-sha256", hashlib.sha256(type(self).body).hexdigest())
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._headers(200, len(type(self).body), {})

    def do_GET(self) -> None:
        body = type(self).body
        first, last = (int(v) for v in self.headers["Range"].split("=")[1].split("-"))
        part = body[first : last + 1]
        cut = self.should_cut(first)
        self._headers(206, len(part), {"Content-Range": f"bytes {first}-{last}/{len(body)}"})
        if cut:
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(part)


@contextmanager
def serving(handler: type[RangedObject], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve ``handler`` on loopback with test credentials (and no other AWS_* setting); yields its URL."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testtest")
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
