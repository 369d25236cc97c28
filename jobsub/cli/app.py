"""Shared CLI state: the chosen profile, the object store (opened lazily), output mode and error rendering."""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from jobsub.cli.safe import plain
from jobsub.config import Profile, resolve_profile
from jobsub.redact import RedactingFilter, redact
from jobsub.storage.base import ObjectStore

if TYPE_CHECKING:
    from jobsub.api import Client


@dataclass
class App:
    profile_option: str | None = None
    debug: bool = False
    _profile: tuple[str, Profile] | None = field(default=None, repr=False)

    @property
    def profile_name(self) -> str:
        return self.resolved[0]

    @property
    def profile(self) -> Profile:
        return self.resolved[1]

    @property
    def resolved(self) -> tuple[str, Profile]:
        if self._profile is None:
            self._profile = resolve_profile(self.profile_option)
        return self._profile

    @cached_property
    def api(self) -> Client:
        """The profile's Python API client (jobsub.api): every command works through it or one from `client`."""
        from jobsub.api import Client

        return Client(self.profile, name=self.profile_name)

    def client(
        self, executor: str | None = None, concurrency: int | None = None, read_timeout: float | None = None
    ) -> Client:
        """A client for one command: the shared one, or a new one with its own executor (`--executor`) or its
        own store connections (`--concurrency`, `--read-timeout` of a transfer; opened when first used)."""
        if executor is None and concurrency is None and read_timeout is None:
            return self.api
        from jobsub.api import Client

        if concurrency is None and read_timeout is None:
            return self.api.with_executor(executor)
        return Client(
            self.profile,
            name=self.profile_name,
            executor=executor,
            concurrency=concurrency or 8,
            read_timeout=read_timeout,
        )

    @property
    def store(self) -> ObjectStore:
        """The profile's object store (opened on first use, shared by the commands of this process)."""
        return self.api.store

    @cached_property
    def console(self):
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    @cached_property
    def out(self):
        from rich.console import Console

        # piped output keeps whole lines (job ids, URIs) instead of wrapping them at 80 columns
        return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


pass_app = click.make_pass_decorator(App, ensure=True)


#: DEL and the C1 controls: JSON allows them raw in strings and json.dumps leaves them so, but a terminal acts
#: on them (U+009B is a one-character CSI); escaped, they read back the same and do nothing when printed
_RAW_CONTROLS = re.compile("[\x7f-\x9f\u2028\u2029]")


def print_json(data: Any) -> None:
    """`data` as JSON for scripts: Unicode kept readable (TNEWS labels), every control character escaped."""
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
    click.echo(_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    if debug:
        logging.getLogger("jobsub").setLevel(logging.DEBUG)
        for name in ("botocore.endpoint", "botocore.retryhandler", "botocore.retries", "urllib3.connectionpool"):
            logging.getLogger(name).setLevel(logging.DEBUG)


def error_line(message: str) -> None:
    """One line on stderr: redacted, and control characters from keys or server text shown, never acted on."""
    click.echo(plain(redact(f"error: {message}")), err=True)


def warn_line(message: str) -> None:
    click.echo(plain(redact(f"warning: {message}")), err=True)
