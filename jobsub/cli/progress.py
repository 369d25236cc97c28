"""Progress subscribers for the CLI: rich bars on a terminal, plain lines now and then when piped."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from jobsub.cli.safe import markup, plain
from jobsub.redact import redact
from jobsub.transfer.events import TransferSubscriber
from jobsub.units import human_duration, human_size

MAX_FILE_BARS = 6


class _Totals:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.files = 0
        self.files_done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()


class PlainProgress(TransferSubscriber):
    """For logs and pipes: a status line every ``interval`` seconds and a line per finished file."""

    def __init__(self, verb: str, interval: float = 2.0, stream=None) -> None:
        self.verb = verb
        self.interval = interval
        self.stream = stream or sys.stderr
        self.t = _Totals()
        self._last = 0.0

    def _write(self, line: str) -> None:
        print(plain(redact(line)), file=self.stream, flush=True)  # paths and keys: shown, never acted on

    def on_queued(self, *, path: str, size: int, **kwargs: Any) -> None:
        self.t.total += size
        self.t.files += 1

    def on_progress(self, *, path: str, bytes_transferred: int, **kwargs: Any) -> None:
        self.t.done += bytes_transferred
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.status_line())

    def status_line(self) -> str:
        t = self.t
        elapsed = max(time.monotonic() - t.started, 1e-6)
        pct = 100.0 * t.done / t.total if t.total else 100.0
        speed = t.done / elapsed
        eta = (t.total - t.done) / speed if speed > 0 else None
        return (
            f"{self.verb}: {human_size(t.done)} / {human_size(t.total)} ({pct:.0f}%), {human_size(speed)}/s, "
            f"ETA {human_duration(eta)}, files {t.files_done}/{t.files}"
        )

    def on_done(self, *, path: str, outcome: str, **kwargs: Any) -> None:
        self.t.files_done += 1
        extra = f": {kwargs['error']}" if outcome == "failed" and "error" in kwargs else ""
        self._write(f"{outcome} {path}{extra}")

    def on_message(self, *, text: str, **kwargs: Any) -> None:
        self._write(text)


class RichProgress(TransferSubscriber):
    """Total and per-file bars with bytes, speed and ETA; resumed bytes count as done."""

    def __init__(self, verb: str, console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.verb = verb
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=30),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.t = _Totals()
        self.total_task = self.progress.add_task(self._total_label(), total=0)
        self.file_tasks: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}

    def _total_label(self) -> str:
        return f"[bold]{self.verb}[/] {self.t.files_done}/{self.t.files} files"

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_queued(self, *, path: str, size: int, **kwargs: Any) -> None:
        self.t.files += 1
        self.sizes[path] = size
        self.progress.update(self.total_task, total=sum(self.sizes.values()), description=self._total_label())

    def on_progress(self, *, path: str, bytes_transferred: int, **kwargs: Any) -> None:
        self.progress.advance(self.total_task, bytes_transferred)
        task = self.file_tasks.get(path)
        if task is None and len(self.file_tasks) < MAX_FILE_BARS:
            name = path if len(path) <= 40 else "…" + path[-39:]
            task = self.file_tasks[path] = self.progress.add_task(f"  {markup(name)}", total=self.sizes.get(path, 0))
        if task is not None:
            self.progress.advance(task, bytes_transferred)

    def on_done(self, *, path: str, outcome: str, **kwargs: Any) -> None:
        self.t.files_done += 1
        task = self.file_tasks.pop(path, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.update(self.total_task, description=self._total_label())
        if outcome == "failed":
            detail = markup(redact(f"{path}: {kwargs.get('error', '')}"))
            self.progress.console.print(f"[red]failed[/] {detail}")

    def on_message(self, *, text: str, **kwargs: Any) -> None:
        self.progress.console.print(plain(redact(text)), markup=False)


class NullContext:
    def __enter__(self) -> NullContext:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_for(verb: str, console, quiet: bool) -> tuple[list[TransferSubscriber], Any]:
    """Subscribers and a context manager to wrap the transfer with, chosen for the output stream."""
    if quiet:
        return [], NullContext()
    if console.is_terminal:
        rich = RichProgress(verb, console)
        return [rich], rich
    return [PlainProgress(verb)], NullContext()
