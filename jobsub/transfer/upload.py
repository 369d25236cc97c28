"""Uploads: files and folders to an object store, multipart above a threshold, resumable across process death.

Memory is bounded: each part worker preads only its own part, so at most (file workers + part workers) x
part size bytes are in flight whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from jobsub.errors import (
    IntegrityError,
    InvalidURIError,
    SourceNotFoundError,
    StorageError,
    UploadNotFoundError,
)
from jobsub.storage.base import SHA256_META, FileRange, ObjectStore, PartInfo
from jobsub.transfer.checksums import cached_sha256, etag_is_md5, md5_b64, range_md5
from jobsub.transfer.common import Cancelled, RateLimiter, TransferOptions, TransferSummary, run_files, with_retries
from jobsub.transfer.events import EventHub
from jobsub.transfer.journal import UploadJournal
from jobsub.transfer.planning import part_ranges, plan_part_size
from jobsub.uri import ObjectURI, key_problem

UploadItem = tuple[Path, str, str]  # (source file, bucket, key)


def plan_uploads(sources: list[str | Path], dest: ObjectURI) -> list[UploadItem]:
    """Map sources to keys. One folder uploads its contents under DEST; several sources go under DEST/<name>.

    A single file goes to DEST itself unless DEST ends with '/' (then DEST/<file name>).
    """
    if not sources:
        raise SourceNotFoundError("nothing to upload: name at least one file or folder")
    items: list[UploadItem] = []
    for raw in sources:
        source = Path(raw).expanduser()
        if not source.exists():
            raise SourceNotFoundError(f"no such file or folder: {raw}")
        source = source.resolve()
        if source.is_file():
            if len(sources) == 1 and dest.key and not dest.is_prefix:
                key = dest.key
            else:
                key = dest.as_prefix().key + source.name if dest.key else source.name
            items.append((source, dest.bucket, key))
            continue
        base = dest.as_prefix() if dest.key else dest
        if len(sources) > 1:
            base = base.join(source.name).as_prefix()
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.name.endswith((".jobsub-part", ".jobsub-part.json")):
                items.append((path, dest.bucket, base.key + path.relative_to(source).as_posix()))
    for path, _bucket, key in items:
        problem = key_problem(key)
        if problem:
            raise InvalidURIError(f"cannot upload {path}: its key {key!r} {problem}")
    return items


class Uploader:
    def __init__(self, store: ObjectStore, options: TransferOptions, hub: EventHub, cancel: threading.Event) -> None:
        self.store = store
        self.options = options
        self.hub = hub
        self.cancel = cancel
        self.summary = TransferSummary()
        self.limiter = RateLimiter(options.max_bandwidth)
        self._parts = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="part")

    def run(self, items: list[UploadItem]) -> TransferSummary:
        for bucket in sorted({b for _, b, _ in items}):
            check = getattr(self.store, "check_bucket", None)
            if check:
                check(bucket)
        for path, _, _ in items:
            size = path.stat().st_size
            self.summary.add(files=1, bytes_total=size)
            self.hub.emit("queued", path=str(path), size=size)
        try:
            return run_files(
                items,
                self._upload_file,
                lambda i: str(i[0]),
                self.hub,
                self.summary,
                self.options,
                self.cancel,
                "upload",
            )
        finally:
            self._parts.shutdown(wait=not self.cancel.is_set(), cancel_futures=True)

    # -- one file ----------------------------------------------------------------------------------------
    def _upload_file(self, item: UploadItem) -> str:
        path, bucket, key = item
        if self.cancel.is_set():
            raise Cancelled()
        stat = path.stat()
        size, label = stat.st_size, str(path)
        report = self.hub.progress_for(label)
        sha = cached_sha256(path)
        existing = self.store.head(bucket, key)
        if existing and existing.size == size and existing.metadata.get(SHA256_META) == sha:
            report(size)
            return "skipped"
        if size <= self.options.multipart_threshold:
            return self._put_small(path, bucket, key, sha, report)
        return self._put_multipart(path, stat.st_mtime_ns, size, bucket, key, sha, report)

    def _stop(self) -> bool:
        return self.cancel.is_set()

    def _put_small(self, path: Path, bucket: str, key: str, sha: str, report) -> str:
        self.limiter.consume(path.stat().st_size, self._stop)
        data = path.read_bytes()
        digest = hashlib.md5(data)

        def send(progress) -> str:
            etag = self.store.put(bucket, key, data, {SHA256_META: sha}, md5_b64(digest.digest()), progress)
            if etag_is_md5(etag) and etag.lower() != digest.hexdigest():
                raise IntegrityError(f"s3://{bucket}/{key} was stored with ETag {etag}, not our MD5")
            return etag

        with_retries(send, report, self.options, self._stop)
        self.summary.add(parts_sent=1, bytes_transferred=len(data))
        return "uploaded"

    def _put_multipart(
        self, path: Path, mtime_ns: int, size: int, bucket: str, key: str, sha: str, report, restarted: bool = False
    ) -> str:
        part_size = plan_part_size(size, self.options.part_size)
        ranges = part_ranges(size, part_size)
        label = str(path)
        store_name = self.store.description
        journal = UploadJournal.load(UploadJournal.path_for(label, store_name, bucket, key))
        fd = os.open(path, os.O_RDONLY)
        try:
            reused: dict[int, str] = {}
            adopted = False
            if journal and (not journal.matches_source(size, mtime_ns, part_size) or journal.sha256 != sha):
                self.hub.emit(
                    "message",
                    text=f"{label} changed since its interrupted upload: aborting upload {journal.upload_id} "
                    "and starting again",
                )
                self._abort_quietly(bucket, key, journal.upload_id)
                journal.delete()
                journal = None
            if journal:
                try:
                    server_parts = self.store.list_parts(bucket, key, journal.upload_id)
                    reused = self._verify_parts(fd, server_parts, ranges, journal.parts)
                except UploadNotFoundError:
                    self.hub.emit(
                        "message",
                        text=f"upload {journal.upload_id} of {label} no longer exists on the server: starting again",
                    )
                    journal.delete()
                    journal = None
            if journal is None:
                upload_id, reused = self._adopt_orphan(fd, bucket, key, ranges) if not restarted else ("", {})
                adopted = bool(upload_id)
                if not upload_id:
                    upload_id = self.store.create_multipart(bucket, key, {SHA256_META: sha})
                journal = UploadJournal(
                    source=label,
                    size=size,
                    mtime_ns=mtime_ns,
                    bucket=bucket,
                    key=key,
                    part_size=part_size,
                    sha256=sha,
                    upload_id=upload_id,
                    store=store_name,
                    parts={str(n): e for n, e in reused.items() if etag_is_md5(e)},
                )
                journal.save()
            if reused:
                self.hub.emit(
                    "message", text=f"resuming {label}: {len(reused)} of {len(ranges)} parts already on the server"
                )
                report(sum(length for n, _, length in ranges if n in reused))
            etags = dict(reused)
            etags.update(self._send_parts(fd, journal, [r for r in ranges if r[0] not in reused], report))
            self.summary.add(parts_reused=len(reused))
            self.store.complete_multipart(bucket, key, journal.upload_id, sorted(etags.items()))
        finally:
            os.close(fd)
        head = self.store.head(bucket, key)
        stored_sha = head.metadata.get(SHA256_META) if head else None
        if head is None or head.size != size:
            raise IntegrityError(f"s3://{bucket}/{key} has the wrong size after completion; run the upload again")
        journal.delete()
        if stored_sha != sha:
            if adopted and not restarted:  # the adopted upload was created for other contents: send it all again
                self.hub.emit("message", text=f"{label}: the adopted upload carried another checksum; uploading again")
                return self._put_multipart(path, mtime_ns, size, bucket, key, sha, report, restarted=True)
            raise IntegrityError(f"s3://{bucket}/{key} lacks the SHA-256 we sent; run the upload again")
        return "resumed" if reused else "uploaded"

    def _send_parts(
        self, fd: int, journal: UploadJournal, ranges: list[tuple[int, int, int]], report
    ) -> dict[int, str]:
        failed = threading.Event()

        def stop() -> bool:
            return self.cancel.is_set() or failed.is_set()

        def send_part(number: int, offset: int, length: int) -> tuple[int, str]:
            if stop():
                raise Cancelled()
            self.limiter.consume(length, stop)
            if os.fstat(fd).st_size < offset + length:
                raise StorageError(f"{journal.source} shrank while uploading; run the upload again")
            # the part is read twice from the page cache (MD5 first, then as it is sent) instead of being held
            # in memory: a transfer costs socket buffers, not concurrency x part size
            md5_hex = range_md5(fd, offset, length)
            body = FileRange(fd, offset, length)

            def send(progress) -> str:
                etag = self.store.upload_part(
                    journal.bucket,
                    journal.key,
                    journal.upload_id,
                    number,
                    body,
                    md5_b64(bytes.fromhex(md5_hex)),
                    progress,
                )
                if etag_is_md5(etag) and etag.lower() != md5_hex:
                    raise IntegrityError(
                        f"part {number} of {journal.source} was stored with ETag {etag}, not its MD5 "
                        "(did the file change while uploading?)"
                    )
                return etag

            try:
                etag = with_retries(send, report, self.options, stop)
            except Exception:
                failed.set()
                raise
            journal.record_part(number, md5_hex)
            self.summary.add(parts_sent=1, bytes_transferred=length)
            return number, etag

        futures = [self._parts.submit(send_part, *r) for r in ranges]
        wait(futures)
        errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
        real = [e for e in errors if not isinstance(e, Cancelled)]
        if real:
            raise real[0]
        if errors or any(f.cancelled() for f in futures):
            raise Cancelled()
        return dict(f.result() for f in futures)

    def _verify_parts(
        self, fd: int, server_parts: list[PartInfo], ranges: list[tuple[int, int, int]], known: dict[str, str]
    ) -> dict[int, str]:
        """Parts on the server that hold exactly our bytes: checked against the journal's MD5 or a fresh one."""
        expected = {n: (offset, length) for n, offset, length in ranges}
        good: dict[int, str] = {}
        for part in server_parts:
            if part.number not in expected or part.size != expected[part.number][1]:
                continue
            md5 = known.get(str(part.number))
            if etag_is_md5(part.etag):
                if md5 is None:
                    md5 = range_md5(fd, *expected[part.number])
                if part.etag.lower() == md5:
                    good[part.number] = part.etag
            elif md5 is not None:  # an ETag that is no MD5 (encryption): trust what the journal recorded
                good[part.number] = part.etag
        return good

    def _adopt_orphan(
        self, fd: int, bucket: str, key: str, ranges: list[tuple[int, int, int]]
    ) -> tuple[str, dict[int, str]]:
        """With no journal, a pending upload of this key whose parts all hold our bytes is resumed, not resent."""
        try:
            pending = [u for u in self.store.list_uploads(bucket, key) if u.key == key]
        except StorageError:
            return "", {}
        for upload in sorted(pending, key=lambda u: str(u.initiated), reverse=True):
            try:
                parts = self.store.list_parts(bucket, key, upload.upload_id)
            except StorageError:
                continue
            good = self._verify_parts(fd, parts, ranges, {})
            if parts and len(good) == len(parts):
                self.hub.emit(
                    "message", text=f"found pending upload {upload.upload_id} of s3://{bucket}/{key}: resuming it"
                )
                return upload.upload_id, good
        return "", {}

    def _abort_quietly(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self.store.abort_multipart(bucket, key, upload_id)
        except StorageError:
            pass
