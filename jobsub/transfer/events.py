"""Progress as events to subscribers (the s3transfer model): the engine knows nothing about terminals.

Subscribers implement any of the ``on_*`` methods; every call passes keyword arguments only and may grow
new ones, so implementations must accept ``**kwargs``.
"""

from __future__ import annotations

import threading
from typing import Any


class TransferSubscriber:
    """Base class with no-op handlers; override what you need."""

    def on_queued(self, *, path: str, size: int, **kwargs: Any) -> None:
        """A file or object joins the transfer; ``size`` counts towards the total."""

    def on_progress(self, *, path: str, bytes_transferred: int, **kwargs: Any) -> None:
        """Bytes moved for ``path`` since the last call; negative when a retry rewinds a part."""

    def on_done(self, *, path: str, outcome: str, **kwargs: Any) -> None:
        """``outcome`` is one of uploaded, resumed, skipped, downloaded, failed (then ``error`` is given)."""

    def on_message(self, *, text: str, **kwargs: Any) -> None:
        """Something the user should read: a restarted upload, a refused key."""


class EventHub:
    """Fans events out to subscribers; thread-safe so workers can report concurrently."""

    def __init__(self, subscribers: list[TransferSubscriber] | None = None) -> None:
        self._subscribers = list(subscribers or [])
        self._lock = threading.Lock()

    def emit(self, event: str, **kwargs: Any) -> None:
        with self._lock:
            for subscriber in self._subscribers:
                getattr(subscriber, f"on_{event}")(**kwargs)

    def progress_for(self, path: str):
        def report(n: int) -> None:
            if n:
                self.emit("progress", path=path, bytes_transferred=n)

        return report
