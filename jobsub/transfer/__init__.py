"""The transfer engine: a thin public manager over upload and download workers (the s3transfer model).

    manager = TransferManager(store, TransferOptions(concurrency=8), subscribers=[MySubscriber()])
    summary = manager.upload(["ckpt/"], ObjectURI.parse("s3://bucket/models/ckpt/"))

Progress reaches subscribers as events (see events.TransferSubscriber); nothing here prints.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from jobsub.storage.base import ObjectStore
from jobsub.transfer.common import TransferOptions, TransferSummary
from jobsub.transfer.download import Downloader
from jobsub.transfer.events import EventHub, TransferSubscriber
from jobsub.transfer.planning import FilePlan, UploadPlan
from jobsub.transfer.upload import Uploader, plan_uploads
from jobsub.uri import ObjectURI

__all__ = ["FilePlan", "TransferManager", "TransferOptions", "TransferSubscriber", "TransferSummary", "UploadPlan"]


class TransferManager:
    def __init__(
        self,
        store: ObjectStore,
        options: TransferOptions | None = None,
        subscribers: list[TransferSubscriber] | None = None,
    ) -> None:
        self.store = store
        options = options or TransferOptions()
        # the checksum algorithm is settled here, once, and every worker reads it from the options
        self.options = replace(options, checksum=options.checksum or store.checksum_algorithm)
        self.hub = EventHub(subscribers)
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop starting new parts; parts already sent stay on the server and a rerun resumes."""
        self._cancel.set()

    def plan_upload(self, sources: list[str | Path], dest: ObjectURI) -> UploadPlan:
        """What ``upload`` would do, file by file, with its parts, bytes and requests; sends nothing."""
        items = plan_uploads(sources, dest)
        uploader = Uploader(self.store, self.options, self.hub, self._cancel)
        try:
            check = getattr(self.store, "check_bucket", None)
            for bucket in sorted({b for _, b, _ in items}):
                if check:
                    check(bucket)
            return uploader.plan(items)
        finally:
            uploader.close()

    def upload(self, sources: list[str | Path], dest: ObjectURI, plan: UploadPlan | None = None) -> TransferSummary:
        """Upload; ``plan``: one ``plan_upload`` made for these sources (the submit's, for its estimate), carried
        out file by file where the file is still the one planned (same identity), so its read is not redone."""
        skipped: list[str] = []  # links out of a folder, FIFOs ...: named, never sent (transfer/sources.py)
        items = plan_uploads(sources, dest, skipped)
        uploader = Uploader(self.store, self.options, self.hub, self._cancel, planned=plan)
        uploader.summary.skipped.extend(skipped)
        return uploader.run(items)

    def download(self, source: ObjectURI, dest: str | Path) -> TransferSummary:
        downloader = Downloader(self.store, self.options, self.hub, self._cancel)
        return downloader.run(downloader.plan(source, dest))
