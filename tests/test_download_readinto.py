"""The download's body reader (S3Store.get_range_to reads the socket straight into one reused buffer).

Bodies that end early or stall mid-way cannot be made with moto or Ceph on demand, so a tiny HTTP/1.1
server on loopback plays the S3 GetObject of one object here (keep-alive, like Ceph; moto closes every
connection). What a user would notice: the bytes written are the object's, a body cut short is a retryable
storage error (never a short file), a stalled body fails within the read timeout, and parts reuse one
connection instead of opening one each.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobsub.errors import EndpointTimeoutError, StorageError
from jobsub.transfer.common import retryable

OBJECT = os.urandom(3 << 20)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "ok"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        first, last = (int(v) for v in self.headers["Range"].split("=")[1].split("-"))
        body = OBJECT[first : last + 1]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(OBJECT)}")
        self.send_header("ETag", '"x"')
        self.end_headers()
        mode = type(self).mode
        if mode == "ok":
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if mode == "stall":
            time.sleep(4)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        type(self).connections += 1
        super().process_request(request, client_address)


@pytest.fixture
def fake_s3(monkeypatch) -> Iterator[str]:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testtest")
    _Handler.mode = "ok"
    _Server.connections = 0
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _store(url: str):
    from jobsub.storage.s3 import S3Store

    return S3Store(endpoint_url=url, addressing_style="path", read_timeout=1, max_attempts=1)


def test_parts_land_byte_exact_over_one_reused_connection(fake_s3: str) -> None:
    store = _store(fake_s3)
    target = bytearray(len(OBJECT))
    moved: list[int] = []

    def write(at: int, chunk) -> None:
        target[at : at + len(chunk)] = chunk

    part = 1 << 20
    for offset in range(0, len(OBJECT), part):
        assert store.get_range_to("b", "k", offset, part, write, moved.append) == part
    assert bytes(target) == OBJECT
    assert sum(moved) == len(OBJECT)
    assert _Server.connections == 1  # each body read to its end hands the connection back to the pool


def test_a_body_cut_short_is_a_retryable_error_and_rewinds_its_progress(fake_s3: str) -> None:
    _Handler.mode = "short"
    store = _store(fake_s3)
    moved: list[int] = []
    with pytest.raises(StorageError) as caught:
        store.get_range_to("b", "k", 0, 1 << 20, lambda at, chunk: None, moved.append)
    assert retryable(caught.value)
    assert sum(moved) == 0
    _Handler.mode = "ok"  # the next attempt gets a fresh connection and the whole part
    target = bytearray(1 << 20)
    store.get_range_to("b", "k", 0, 1 << 20, lambda at, chunk: target.__setitem__(slice(at, at + len(chunk)), chunk))
    assert bytes(target) == OBJECT[: 1 << 20]


def test_a_body_that_stalls_fails_within_the_read_timeout(fake_s3: str) -> None:
    _Handler.mode = "stall"
    store = _store(fake_s3)
    started = time.monotonic()
    with pytest.raises(EndpointTimeoutError, match="no reply in 1 s"):
        store.get_range_to("b", "k", 0, 1 << 20, lambda at, chunk: None)
    assert time.monotonic() - started < 3.5


def test_a_download_from_ceph_keeps_its_connections(cephenv, tmp_path, caplog) -> None:
    """Ceph keeps connections alive (moto closes each): every part read to its end hands its connection
    back, so a 12-part download opens at most one connection per worker, not one per part."""
    import logging

    from jobsub.transfer import TransferManager, TransferOptions
    from jobsub.uri import ObjectURI
    from tests.conftest import write_random

    source = write_random(tmp_path / "src.bin", 12 * (5 << 20) + 7, seed=5)
    cephenv.run("upload", str(source), cephenv.uri("keep/src.bin"), "-q", check=True)
    store = cephenv.store()
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    options = TransferOptions(part_size=5 << 20, concurrency=3)
    summary = TransferManager(store, options).download(ObjectURI.parse(cephenv.uri("keep/src.bin")), tmp_path / "out")
    assert summary.parts_sent == 13 and not summary.failures
    assert (tmp_path / "out").read_bytes() == source.read_bytes()
    opened = [r for r in caplog.records if "Starting new HTTP connection" in r.getMessage()]
    assert 1 <= len(opened) <= 3 + 1  # the workers' connections (+ the HEAD's, if it was not reused)
