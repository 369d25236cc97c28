"""Output uploads on their own worker, so log lines keep flowing while a multi-GB checkpoint is sent.

One upload at a time, never overlapping the previous one: a periodic request while one runs is skipped
(the next one, or the final one, sends what changed). The final upload is retried; what still failed is
an error that lists the files that failed and the ones that did upload.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from jobsub.errors import JobsubError
from jobsub.storage.base import ObjectStore
from jobsub.units import human_size
from jobsub.uri import ObjectURI

if TYPE_CHECKING:  # the transfer engine is imported at the first upload, after the command started
    from jobsub.transfer import TransferManager, TransferOptions, TransferSummary

FINAL_ATTEMPTS = int(os.environ.get("JOBSUB_OUTPUT_UPLOAD_ATTEMPTS", "3"))


class OutputUploadError(JobsubError):
    pass


def _files(folder: Path) -> list[Path]:
    """What an upload of `folder` sends (transfer/sources.py): no link out of it, no FIFO."""
    from jobsub.transfer.sources import folder_files

    return folder_files(folder)[0] if folder.is_dir() else []


class OutputUploader:
    def __init__(
        self,
        store: ObjectStore,
        folder: Path,
        dest: ObjectURI,
        say: Callable[[str], None],
        options: TransferOptions | Callable[[], TransferOptions] | None = None,
        retry_pause: float = 2.0,
    ) -> None:
        self.store = store
        self.folder = folder
        self.dest = dest
        self.say = say
        self._options = options  # a callable: made at the first upload (the transfer engine is imported then)
        self.retry_pause = retry_pause
        self._busy = threading.Lock()  # held for the whole of one upload
        self._thread: threading.Thread | None = None
        self._said: set[str] = set()  # skipped entries already named in the log (each once per job)
        self._manager: TransferManager | None = None  # the upload in progress, for cancel()
        self._cancelled = False

    def _upload_once(self, label: str) -> TransferSummary | None:
        files = _files(self.folder)
        if not files:
            return None
        total = sum(p.stat().st_size for p in files)
        self.say(f"{label} output upload started: {len(files)} files, {human_size(total)}")
        started = time.monotonic()
        from jobsub.transfer import TransferManager, TransferOptions

        options = self._options() if callable(self._options) else self._options
        self._manager = TransferManager(self.store, options or TransferOptions(concurrency=4))
        if self._cancelled:
            self._manager.cancel()
        summary = self._manager.upload([self.folder], self.dest)
        seconds = time.monotonic() - started
        for note in summary.skipped:
            if note not in self._said:
                self._said.add(note)
                self.say(f"output not uploaded: {self._rel(note.split(': ', 1)[0])}: {note.split(': ', 1)[-1]}")
        outcome = f"{len(summary.failures)} failed, " if summary.failures else ""
        self.say(
            f"{label} output upload ended: {outcome}{summary.files_transferred} sent "
            f"({human_size(summary.bytes_transferred)}), {summary.files_skipped} unchanged, in {seconds:.1f}s"
        )
        return summary

    # -- periodic ---------------------------------------------------------------------------------------
    def request(self) -> bool:
        """Start a periodic upload on the worker unless one is running; never blocks."""
        if not self._busy.acquire(blocking=False):
            return False

        def work() -> None:
            try:
                summary = self._upload_once("periodic")
                if summary and summary.failures:
                    self.say(f"periodic output upload: {self._describe(summary)}; they are sent again later")
            except JobsubError as exc:
                self.say(f"periodic output upload failed ({exc}); it is tried again later")
            finally:
                self._busy.release()

        self._thread = threading.Thread(target=work, name="output-upload", daemon=True)
        self._thread.start()
        return True

    def cancel(self) -> None:
        """Stop the upload in progress and send nothing more (the job's cost limit was reached)."""
        self._cancelled = True
        if self._manager is not None:
            self._manager.cancel()

    def busy(self) -> bool:
        return self._busy.locked()

    # -- final ------------------------------------------------------------------------------------------
    def final(self, label: str = "final") -> None:
        """Upload everything, waiting for a running periodic upload first; retried, then OutputUploadError."""
        with self._busy:
            summary = None
            for attempt in range(1, FINAL_ATTEMPTS + 1):
                if self._cancelled:
                    raise OutputUploadError("uploading outputs stopped: the job's cost limit was reached")
                try:
                    summary = self._upload_once(label)
                except JobsubError as exc:
                    if self._cancelled:
                        raise OutputUploadError("uploading outputs stopped: the job's cost limit was reached") from None
                    if attempt == FINAL_ATTEMPTS:
                        raise OutputUploadError(f"uploading outputs failed: {exc}") from None
                    self.say(f"output upload attempt {attempt} failed ({exc}); retrying")
                    time.sleep(self.retry_pause * attempt)
                    continue
                if summary is None or not summary.failures:
                    return
                if attempt < FINAL_ATTEMPTS:
                    self.say(f"output upload attempt {attempt}: {self._describe(summary)}; retrying")
                    time.sleep(self.retry_pause * attempt)
            assert summary is not None
            failed = self._failed_files(summary)
            uploaded = [self._rel(p) for p in _files(self.folder) if self._rel(p) not in failed]
            raise OutputUploadError(
                f"uploading outputs failed: {self._describe(summary)}; uploaded: "
                + (", ".join(uploaded[:10]) + (f" and {len(uploaded) - 10} more" if len(uploaded) > 10 else "")
                   if uploaded else "nothing")
            )  # fmt: skip

    def _rel(self, path: Path | str) -> str:
        try:
            return Path(path).relative_to(self.folder).as_posix()
        except ValueError:
            return str(path)

    def _failed_files(self, summary: TransferSummary) -> dict[str, str]:
        failed: dict[str, str] = {}
        for line in summary.failures:
            path, _, reason = line.partition(": ")
            failed[self._rel(path)] = reason
        return failed

    def _describe(self, summary: TransferSummary) -> str:
        failed = self._failed_files(summary)
        return "; ".join(f"{name}: {reason}" for name, reason in list(failed.items())[:5]) + (
            f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        )
