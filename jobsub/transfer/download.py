"""Downloads: parallel ranged GETs into a partial file, resumable, verified, renamed into place atomically.

Never writes outside DEST: a key with a '..' or '.' segment, a leading '/', a backslash or an empty segment
is refused with a message and the rest of the download continues (the command then exits 1 with the count,
unless --skip-unsafe). Zero-byte folder markers (`prefix/`, as a console's "Create folder" makes) are folders;
keys a local folder cannot hold together (`a` and `a/b`) fail the download before any byte moves
(transfer/keymap.py classifies every key, for downloads and job staging alike).

Every file is verified by the strongest checksum its object offers: jobsub's SHA-256 metadata, then a flexible
checksum the server returns with ChecksumMode=ENABLED (full-object or composite), then a single-part MD5 ETag;
objects that offer none are checked by size only, said so per file, and a local file is never "unchanged" on
size alone. A full disk is found before any byte moves (the part file is preallocated) and leaves nothing
behind.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from jobsub.errors import (
    InsufficientSpaceError,
    IntegrityError,
    ObjectChangedError,
    ObjectNotFoundError,
    StorageError,
)
from jobsub.storage.base import SHA256_META, ObjectInfo, ObjectStore
from jobsub.transfer.checksums import Checksum, cached_sha256, etag_is_md5, file_checksum, file_digest, new_hasher
from jobsub.transfer.common import Cancelled, RateLimiter, TransferOptions, TransferSummary, run_files, with_retries
from jobsub.transfer.events import EventHub
from jobsub.transfer.inorder import InOrderHasher
from jobsub.transfer.journal import DownloadJournal
from jobsub.transfer.keymap import check_conflicts, classify_key
from jobsub.transfer.planning import part_ranges, plan_download_ranges, plan_part_size
from jobsub.units import human_size
from jobsub.uri import ObjectURI

DownloadItem = tuple[str, ObjectInfo, Path]  # (bucket, listed object, target file)
PARTIAL_SUFFIX = ".jobsub-part"
SIZE_ONLY = "size only"
_FLEXIBLE_ORDER = ("crc64nvme", "crc32c", "crc32", "sha256")
#: a HEAD made by plan() stands in for the download's own for this long (the CLI downloads at once)
_HEAD_FRESH_S = 5.0
#: the journal records a part's written prefix every this many bytes (what a kill -9 may fetch again per part)
_SAVE_EVERY = 8 << 20


def composite_checksum(path: Path, algorithm: str, part_size: int) -> str:
    """An S3 COMPOSITE checksum: the checksum of the parts' raw checksums, base64, with '-<parts>'."""
    outer = new_hasher(algorithm)
    count = 0
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        for offset in range(0, max(size, 1), part_size):
            part = Checksum.of_range(algorithm, fh.fileno(), offset, min(part_size, size - offset))
            outer.update(base64.b64decode(part.value))
            count += 1
    return f"{base64.b64encode(outer.digest()).decode()}-{count}"


def _no_space(target: Path, needed: int) -> InsufficientSpaceError:
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError:
        free = 0
    return InsufficientSpaceError(
        f"not enough space for {target}: it needs {human_size(needed)} ({needed} bytes), "
        f"{human_size(free)} free there; free some space or download elsewhere"
    )


class Downloader:
    def __init__(self, store: ObjectStore, options: TransferOptions, hub: EventHub, cancel: threading.Event) -> None:
        self.store = store
        self.options = options
        self.hub = hub
        self.cancel = cancel
        self.summary = TransferSummary()
        self.limiter = RateLimiter(options.max_bandwidth)
        self._parts = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="range")
        self._headed: dict[tuple[str, str], tuple[ObjectInfo, float]] = {}  # plan()'s HEADs, used once

    def _head(self, bucket: str, listed: ObjectInfo) -> ObjectInfo | None:
        """The object's HEAD for its download: the one plan() just made for a single object (one request
        fewer), else a new one (a listing carries no metadata, and an object may change after it is listed)."""
        headed = self._headed.pop((bucket, listed.key), None)
        if headed is not None and headed[0] is listed and time.monotonic() - headed[1] < _HEAD_FRESH_S:
            return listed
        return self.store.head(bucket, listed.key)

    def plan(self, source: ObjectURI, dest: str | Path) -> list[DownloadItem]:
        """One object (to DEST, or DEST/<name> when DEST is a folder or ends with '/') or all under a prefix."""
        raw = str(dest)
        dest = Path(dest).expanduser()
        if source.key and not source.is_prefix:
            info = self.store.head(source.bucket, source.key)
            if info is not None:
                self._headed[(source.bucket, info.key)] = (info, time.monotonic())
                into_folder = dest.is_dir() or raw.endswith(("/", os.sep))
                return [(source.bucket, info, (dest / source.name) if into_folder else dest)]
        prefix = source.as_prefix().key if source.key else ""
        items: list[DownloadItem] = []
        files: dict[Path, str] = {}
        folders: dict[Path, str] = {}
        for info in self.store.iter_objects(source.bucket, prefix):
            seen = classify_key(dest, info.key[len(prefix) :], info.size)
            if seen.kind == "folder" and seen.target is not None:
                folders[seen.target] = info.key  # a console's "Create folder" marker: a folder, not a file
                continue
            if seen.kind == "unsafe" or seen.target is None:
                self.summary.refused.append(info.key)
                self.hub.emit("message", text=f"refused key {info.key!r}: it {seen.problem}; skipped")
                continue
            files[seen.target] = info.key
            items.append((source.bucket, info, seen.target))
        if not items and not folders and not self.summary.refused:
            raise ObjectNotFoundError(f"nothing found at {source}")
        check_conflicts(dest, files, folders, str(source))
        for folder in sorted(folders):  # empty folders made with a console stay folders here too
            folder.mkdir(parents=True, exist_ok=True)
        return items

    def run(self, items: list[DownloadItem]) -> TransferSummary:
        for _, info, target in items:
            self.summary.add(files=1, bytes_total=info.size)
            self.hub.emit("queued", path=str(target), size=info.size)
        try:
            return run_files(
                items,
                self._download,
                lambda i: f"s3://{i[0]}/{i[1].key}",
                self.hub,
                self.summary,
                self.options,
                self.cancel,
                "download",
            )
        finally:
            self._parts.shutdown(wait=not self.cancel.is_set(), cancel_futures=True)

    def _download(self, item: DownloadItem) -> str:
        bucket, listed, target = item
        if self.cancel.is_set():
            raise Cancelled()
        info = self._head(bucket, listed)
        if info is None:
            raise ObjectNotFoundError(f"s3://{bucket}/{listed.key} disappeared before it could be downloaded")
        report = self.hub.progress_for(str(target))
        label = f"s3://{bucket}/{info.key}"
        sha = info.metadata.get(SHA256_META)
        if target.is_file() and target.stat().st_size == info.size:
            how = self._matches(target, bucket, info, sha)
            if how and how != SIZE_ONLY:  # never "unchanged" on size alone
                report(info.size)
                self.summary.verified(label, how)
                return "skipped"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        journal_path = DownloadJournal.path_for(partial)
        stream = getattr(self.store, "get_range_to", None)  # S3: chunks go to the file as they arrive
        copy = getattr(self.store, "copy_range_to", None)  # local store: the kernel copies, as `cp` does
        if stream is not None and copy is None:  # streamed: large ranges, the hash follows each as it grows
            part_size, tail_part, ranges = plan_download_ranges(
                info.size, self.options.concurrency, self.options.part_size
            )
        else:  # whole parts (a local copy, or a store that returns bytes): hashed once each is complete
            part_size = tail_part = plan_part_size(info.size, self.options.part_size)
            ranges = part_ranges(info.size, part_size) if info.size else []
        lengths = {n: length for n, _, length in ranges}
        state = DownloadJournal(
            key=info.key,
            etag=info.etag,
            size=info.size,
            part_size=part_size,
            tail_part=tail_part,
            layout=DownloadJournal.layout_of(ranges),
        )
        done: set[int] = set()
        written: dict[int, int] = {}  # part -> bytes from its start in the file (parts in flight)
        old = DownloadJournal.load(journal_path)
        if old and old.same_object(state) and partial.is_file() and partial.stat().st_size == info.size:
            done = old.done_parts() & set(lengths)
            if stream is not None and copy is None:
                written = {
                    n: v for n, v in old.written.items() if n in lengths and n not in done and 0 < v < lengths[n]
                }
        if not done and not written:
            self._preallocate(partial, target, info.size)
        resumed = bool(done or written)
        self.summary.add(parts_reused=len(done))
        if resumed:
            report(sum(length for n, _, length in ranges if n in done) + sum(written.values()))
        state.written = dict(written)
        lock = threading.Lock()

        def save_state() -> None:  # under `lock`; costs O(parts in flight), not O(parts), however large the file
            state.set_done(done)
            state.save(journal_path)

        fd = os.open(partial, os.O_RDWR)
        failed = threading.Event()
        hasher = InOrderHasher(fd, ranges, done, written) if sha else None  # the end-to-end check, as bytes land
        try:

            def fetch(number: int, offset: int, length: int) -> None:
                have = written.get(number, 0)  # bytes of this part in the file: never fetched (or written) again
                saved = resumed_at = have

                def write(at: int, chunk: bytes | memoryview) -> None:
                    try:
                        view = memoryview(chunk)
                        while view:  # a short write (NFS, FUSE, a size limit) writes the rest, or raises
                            n = os.pwrite(fd, view, at)
                            if n <= 0:
                                raise OSError(errno.EIO, f"wrote nothing to {partial} at {at}")
                            view, at = view[n:], at + n
                    except OSError as exc:
                        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                            raise _no_space(target, info.size) from None
                        raise

                def write_streamed(at: int, chunk: memoryview) -> None:
                    """A streamed chunk: only where this part's prefix ends and never past the part (a server
                    that ignores the Range would otherwise overwrite other parts, hashed ones included)."""
                    nonlocal have, saved
                    if at != offset + have or have + len(chunk) > length:
                        raise StorageError(
                            f"s3://{bucket}/{info.key}: the server sent bytes outside the range asked for "
                            f"(at {at}, range {offset}-{offset + length - 1}); refused"
                        )
                    write(at, chunk)
                    have += len(chunk)
                    if hasher:
                        hasher.wrote(number, have, chunk)  # after the write: the hash covers only written bytes
                    report(len(chunk))
                    if have - saved >= _SAVE_EVERY and have < length:
                        saved = have
                        with lock:
                            state.written[number] = have
                            save_state()

                def get(progress) -> None:
                    if copy is not None:
                        try:
                            got = copy(bucket, info.key, offset, length, fd, progress)
                        except OSError as exc:
                            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                                raise _no_space(target, info.size) from None
                            raise
                    elif stream is not None:
                        # a retry continues where the bytes in the file end (they are never written twice:
                        # the in-order hash may have read them); progress is reported per written chunk
                        if have < length:
                            stream(
                                bucket, info.key, offset + have, length - have, write_streamed, None, info.etag or None
                            )
                        got = have
                    else:
                        data = self.store.get_range(bucket, info.key, offset, length, progress)
                        got = len(data)
                        if got == length:
                            write(offset, data)
                    if got != length:
                        raise StorageError(f"short read of s3://{bucket}/{info.key} at {offset}")

                try:
                    self.limiter.consume(length - resumed_at, lambda: self.cancel.is_set() or failed.is_set())
                    with_retries(get, report, self.options, lambda: self.cancel.is_set() or failed.is_set())
                except Exception:
                    failed.set()
                    raise
                with lock:
                    done.add(number)
                    state.written.pop(number, None)
                    save_state()
                if hasher:
                    hasher.completed(number)
                self.summary.add(parts_sent=1, bytes_transferred=length - resumed_at)

            futures = [self._parts.submit(fetch, *r) for r in ranges if r[0] not in done]
            wait(futures)
            errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
            real = [e for e in errors if not isinstance(e, Cancelled)]
            if real:
                # a rerun cannot resume into a full disk, nor keep bytes of an object that was replaced
                if isinstance(real[0], InsufficientSpaceError | ObjectChangedError):
                    partial.unlink(missing_ok=True)
                    journal_path.unlink(missing_ok=True)
                raise real[0]
            if errors or any(f.cancelled() for f in futures):
                raise Cancelled()
            os.fsync(fd)
            digest = hasher.hexdigest() if hasher else None
        finally:
            if hasher:
                hasher.stop()
            os.close(fd)
        how = self._matches(partial, bucket, info, sha, digest)
        if not how:
            partial.unlink(missing_ok=True)
            journal_path.unlink(missing_ok=True)
            raise IntegrityError(f"s3://{bucket}/{info.key} downloaded with a wrong checksum; run the download again")
        os.replace(partial, target)
        journal_path.unlink(missing_ok=True)
        self.summary.verified(label, how)
        return "resumed" if resumed else "downloaded"

    @staticmethod
    def _preallocate(partial: Path, target: Path, size: int) -> None:
        """Reserve the whole file first: a full disk is found before any byte moves, and leaves nothing."""
        try:
            with partial.open("wb") as fh:
                if size:
                    try:
                        os.posix_fallocate(fh.fileno(), 0, size)
                    except OSError as exc:
                        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                            raise
                        fh.truncate(size)  # a filesystem without fallocate: sparse, ENOSPC shows on write
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _no_space(target, size) from None
            raise

    def _matches(
        self, path: Path, bucket: str, info: ObjectInfo, sha: str | None, digest: str | None = None
    ) -> str | None:
        """How the local file was found to hold the object's bytes (the strongest checksum the object
        carries), SIZE_ONLY when the size is all there is to compare, None when it does not match.
        `digest`: the file's SHA-256 when already computed (while downloading)."""
        if path.stat().st_size != info.size:
            return None
        if sha:
            if digest is None:
                digest = cached_sha256(path) if not path.name.endswith(PARTIAL_SUFFIX) else file_digest(path)
            return "sha256" if digest == sha else None
        multipart = "-" in info.etag
        for algorithm in _FLEXIBLE_ORDER:
            value = info.checksums.get(algorithm)
            if not value:
                continue
            # the checksum type when the server says it; else a multipart object's is composite (moto omits
            # both the type and the '-N' suffix), and a full-object value is tried after it
            kinds = [info.checksum_type] if info.checksum_type else (["COMPOSITE", "FULL_OBJECT"] if multipart else [])
            kinds = kinds or ["FULL_OBJECT"]
            compared = False
            for kind in kinds:
                if kind == "FULL_OBJECT":
                    compared = True
                    if file_checksum(path, algorithm).value == value.split("-")[0]:
                        return algorithm
                    continue
                part_size_of = getattr(self.store, "part_size_of", None)
                part_size = part_size_of(bucket, info.key) if part_size_of else None
                if part_size:  # without the part size a composite value cannot be recomputed
                    compared = True
                    if composite_checksum(path, algorithm, part_size).split("-")[0] == value.split("-")[0]:
                        return algorithm
            if compared:
                return None
        if etag_is_md5(info.etag):
            return "md5" if file_digest(path, "md5") == info.etag.lower() else None
        return SIZE_ONLY
