"""Who may ask and what every answer says about itself: the token, the Host check and the security headers.

One pure ASGI middleware (streaming answers pass through untouched):
- a token, when the server has one, comes as `?token=` (answered with a cookie and a redirect to the same
  page without it, so the token leaves the address bar and the history), the cookie, or `Authorization:
  Bearer`; anything else is 403. Compared in constant time.
- a Host header the server was not started for is 403: a page on another site that rebinds its name to
  127.0.0.1 cannot read a loopback server's API.
- every answer carries a Content-Security-Policy without inline script, nosniff, no framing, no referrer.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "jobsub_ui_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Scope = dict[str, Any]


class SecurityMiddleware:
    def __init__(self, app: Any, token: str | None = None, allowed_hosts: list[str] | None = None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and headers.get("host", "").lower() not in self.allowed_hosts:
            await _plain(send, 403, "forbidden: this server answers only to the address it printed")
            return
        if self.token:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token")
            if given is not None and secrets.compare_digest(given.encode(), self.token.encode()):
                rest = urlencode([(k, v) for k, v in parse_qsl(scope["query_string"].decode()) if k != "token"])
                location = scope["path"] + ("?" + rest if rest else "")
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await _plain(send, 303, "", [(b"location", location.encode()), (b"set-cookie", cookie.encode())])
                return
            if not self._authorized(headers):
                await _plain(send, 403, "forbidden: open the URL with ?token=... that `jobsub ui` printed")
                return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.token
        expected = self.token.encode()
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and secrets.compare_digest(bearer[7:].strip().encode(), expected):
            return True
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no cookie
            return False
        morsel = cookies.get(COOKIE)
        return morsel is not None and secrets.compare_digest(morsel.value.encode(), expected)


async def _plain(send: Any, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS, *(extra or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})
