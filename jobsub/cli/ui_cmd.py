"""`jobsub ui`: serve the web view of the profile's jobs (jobsub/web/) on this machine."""

from __future__ import annotations

import ipaddress
import secrets
import socket

import click

from jobsub.cli.app import App, pass_app
from jobsub.errors import UsageError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port") from None
    sock.listen(128)
    return sock


@click.command("ui")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="a free port")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--token", "require_token", is_flag=True, help="Require a token on loopback too (always off it).")
@pass_app
def ui_command(app: App, port: int, host: str, open_browser: bool, require_token: bool) -> None:
    """A live, read-only web view of this profile's jobs: list, log tail, curves, results, costs.

    It reads the same records as `jobsub jobs` / `logs` / `results`, from the object store alone. On an
    address other than loopback a token is required: it is printed once, in the URL to open.
    """
    try:
        import uvicorn

        from jobsub.web.app import create_app
        from jobsub.web.data import WebData
    except ImportError as exc:
        raise UsageError(f"the web view needs its extra ({exc.name} is missing): pip install 'jobsub[ui]'") from None
    loopback = is_loopback(host)
    token = secrets.token_urlsafe(24) if require_token or not loopback else None
    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    allowed = [f"{name}:{actual}" for name in ("127.0.0.1", "localhost", "[::1]")] if loopback else None
    web = create_app(WebData(app.client()), token=token, allowed_hosts=allowed)
    url = f"http://{shown}:{actual}/" + (f"?token={token}" if token else "")
    click.echo(f"jobsub ui: jobs of profile {app.profile_name!r} at {url}", err=False)
    click.echo("read-only; Ctrl-C stops it", err=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(web, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
