"""A small fault-injecting HTTP proxy on loopback, placed between jobsub and the moto S3 server.

Each request is read whole, matched against rules (method + path regex, which occurrence), and either
forwarded, answered with an HTTP error (500, 503, 403 AccessDenied, 404 NoSuchKey), cut with a TCP reset,
delayed, or forwarded with one body byte flipped
(headers such as Content-MD5 untouched: corruption on the way). Every response carries
`Connection: close`, so request boundaries stay simple.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

#: injected answers: action -> (HTTP status, reason, S3 error code)
_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError"),
    "503": (503, "Service Unavailable", "SlowDown"),
    "403": (403, "Forbidden", "AccessDenied"),
    "404": (404, "Not Found", "NoSuchKey"),
}


@dataclass
class Rule:
    method: str
    path_regex: str
    action: str  # "reset" | "500" | "503" | "403" | "404" | "stall" | "corrupt"
    occurrences: set[int] | None = None  # 1-based occurrence numbers of matching requests; None = every one
    stall_seconds: float = 0.0
    seen: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if method != self.method or not re.search(self.path_regex, path):
            return False
        self.seen += 1
        hit = self.occurrences is None or self.seen in self.occurrences
        self.hits += hit
        return hit


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: (method, path, upstream status, what the proxy did) for every forwarded request
    responses: list[tuple[str, str, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        parsed = urlparse(self.upstream)
        self._up = (parsed.hostname, parsed.port)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    @staticmethod
    def _read_request(client: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            chunk = client.recv(min(1 << 20, length - len(body)))
            if not chunk:
                return None
            body += chunk
        return head + b"\r\n\r\n" + body

    def _handle(self, client: socket.socket) -> None:
        with client:
            request = self._read_request(client)
            if request is None:
                return
            method, path = request.split(b" ", 2)[:2]
            method_s, path_s = method.decode(), path.decode()
            with self._lock:
                self.requests.append((method_s, path_s))
                hits = [r for r in self.rules if r.matches(method_s, path_s)]  # every rule counts every request
                rule = hits[0] if hits else None
            if rule and rule.action == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if rule and rule.action in _ERRORS:
                status, reason, code = _ERRORS[rule.action]
                body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                client.sendall(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                return
            if rule and rule.action == "stall":
                time.sleep(rule.stall_seconds)
            head, _, body = request.partition(b"\r\n\r\n")
            if rule and rule.action == "corrupt" and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
            head = re.sub(rb"(?i)\r\nconnection:[^\r]*", b"", head) + b"\r\nConnection: close"
            with socket.create_connection(self._up) as upstream:
                upstream.sendall(head + b"\r\n\r\n" + body)
                response = b""
                while chunk := upstream.recv(1 << 20):
                    response += chunk
            rhead, _, rbody = response.partition(b"\r\n\r\n")
            statuses = [int(c) for c in re.findall(rb"(?m)^HTTP/\d\.\d (\d{3})", response) if not c.startswith(b"1")]
            with self._lock:  # the final status, after any "100 Continue"
                did = rule.action if rule else "forward"
                self.responses.append((method_s, path_s, statuses[0] if statuses else 0, did))
            rhead = re.sub(rb"(?i)\r\nconnection:[^\r]*", b"", rhead) + b"\r\nConnection: close"
            try:
                client.sendall(rhead + b"\r\n\r\n" + rbody)
            except OSError:
                pass
