"""Uploads: files and folders to an object store, multipart above a threshold, resumable across process death.

Never lies about what it stored:
* the source's identity (size, mtime_ns, ctime_ns, inode) is taken before it is read and checked again after
  it was sent; a change in between aborts with `source changed during upload: PATH` and nothing is completed;
* the SHA-256 that goes into metadata comes from a cache keyed by that identity (a same-size rewrite with a
  restored mtime still has a new ctime), or from the very bytes sent (small files, local copies);
* parts a journal or a pending upload offer for reuse are re-read and compared with the server's checksum.

Memory is bounded: each part worker preads only its own part, so at most (file workers + part workers) x
part size bytes are in flight whatever the file size. A local-folder store gets no parts at all: the file is
copied in one pass that also hashes it (LocalStore.stage_file).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from jobsub.errors import (
    ChecksumUnsupportedError,
    IntegrityError,
    InvalidURIError,
    JobsubError,
    SourceChangedError,
    SourceNotFoundError,
    StorageError,
    UploadNotFoundError,
)
from jobsub.storage.base import SHA256_META, FileRange, ObjectInfo, ObjectStore, PartInfo, UploadInfo
from jobsub.storage.checksums import SIGNED_OR_MD5, SIGNED_SHA256
from jobsub.transfer.checksums import (
    Checksum,
    cached_sha256,
    etag_is_md5,
    identity,
    lookup_sha256,
    remember_sha256,
    sha256_and_parts,
)
from jobsub.transfer.common import Cancelled, RateLimiter, TransferOptions, TransferSummary, run_files, with_retries
from jobsub.transfer.events import EventHub
from jobsub.transfer.journal import UploadJournal
from jobsub.transfer.planning import FilePlan, UploadPlan, part_ranges, plan_part_size
from jobsub.transfer.sources import folder_files
from jobsub.uri import ObjectURI, key_problem

UploadItem = tuple[Path, str, str]  # (source file, bucket, key)


def plan_uploads(sources: list[str | Path], dest: ObjectURI, skipped: list[str] | None = None) -> list[UploadItem]:
    """Map sources to keys. One folder uploads its contents under DEST; several sources go under DEST/<name>.

    A single file goes to DEST itself unless DEST ends with '/' (then DEST/<file name>). Inside a folder,
    links that leave it and non-regular files are not sent; each is noted in `skipped` (transfer/sources.py).
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
        files, notes = folder_files(source)
        if skipped is not None:
            skipped.extend(notes)
        for path in files:
            if not path.name.endswith((".jobsub-part", ".jobsub-part.json")):
                items.append((path, dest.bucket, base.key + path.relative_to(source).as_posix()))
    for path, _bucket, key in items:
        problem = key_problem(key)
        if problem:
            raise InvalidURIError(f"cannot upload {path}: its key {key!r} {problem}")
    return items


#: A file changed less than this long ago may change again within the same timestamp tick, unseen by stat.
SETTLE_SECONDS = 0.02


def stable_stat(path: Path) -> os.stat_result:
    """Stat a file once its last change is older than a timestamp tick, so any later write shows in stat."""
    stat = path.stat()
    for _ in range(50):
        age = time.time() - max(stat.st_mtime_ns, stat.st_ctime_ns) / 1e9
        if age >= SETTLE_SECONDS or age < -1.0:  # settled, or a clock that runs behind the filesystem
            return stat
        time.sleep(SETTLE_SECONDS - age)
        stat = path.stat()
    return stat


def _changed(path: Path) -> SourceChangedError:
    return SourceChangedError(f"source changed during upload: {path}; run the command again")


def _check_unchanged(path: Path, before: os.stat_result) -> None:
    try:
        now = path.stat()
    except OSError:
        raise _changed(path) from None
    if identity(now) != identity(before):
        raise _changed(path)


class Uploader:
    def __init__(
        self,
        store: ObjectStore,
        options: TransferOptions,
        hub: EventHub,
        cancel: threading.Event,
        planned: UploadPlan | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.hub = hub
        self.cancel = cancel
        self.summary = TransferSummary()
        self.limiter = RateLimiter(options.max_bandwidth)
        self._parts = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="part")
        # resolved once from the profile (TransferManager); only a server that refuses it changes it (to md5).
        # SIGNED_OR_MD5 (auto on a non-AWS endpoint) is settled by _settle_algorithm: in run(), on the helper
        # thread beside the first files' hash pass (a pass that guessed otherwise is made again).
        self.algorithm: str = options.checksum or store.checksum_algorithm
        self._fallback_lock = threading.Lock()
        self._settle_lock = threading.Lock()
        self._plan_check: str | None = None  # a plan-only run's check for `auto`, read once (_settle_algorithm)
        #: plans made earlier for these files (a submit's, for its estimate), each used once if still current
        self._planned: dict[UploadItem, FilePlan] = {
            (Path(f.source), f.bucket, f.key): f for f in (planned.files if planned else [])
        }
        self._planned_lock = threading.Lock()
        #: an upload's bucket check and probe (run()); None for a plan only, which asks nothing
        self._guard: Future[None] | None = None
        #: requests sent while a file's hash pass runs (run(); see _pass_beside_requests)
        self._requests: ThreadPoolExecutor | None = None

    def run(self, items: list[UploadItem]) -> TransferSummary:
        """Upload the items. The bucket check and the signed-payload probe go out on a helper thread while the
        first files are read (their hash pass, _pass_beside_requests); every file waits for both before it
        decides anything, and their error, if any, is raised here, as when they ran first."""
        for path, _, _ in items:  # before any request: a file gone since the plan sends nothing
            size = path.stat().st_size
            self.summary.add(files=1, bytes_total=size)
            self.hub.emit("queued", path=str(path), size=size)
        self._requests = ThreadPoolExecutor(max_workers=self.options.concurrency + 1, thread_name_prefix="ask")
        try:
            self._guard = self._requests.submit(self._check_and_settle, items)
            summary = run_files(
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
            self._requests.shutdown(wait=False, cancel_futures=True)
        assert self._guard is not None
        self._guard.result()  # a missing bucket, refused credentials: every file stopped at Cancelled
        return summary

    def _check_and_settle(self, items: list[UploadItem]) -> None:
        """What an upload asks before it writes: does each bucket exist with these credentials (one clear
        error early), and which part check does the server verify (_settle_algorithm, the probe)."""
        check = getattr(self.store, "check_bucket", None)
        for bucket in sorted({b for _, b, _ in items}):
            if check:
                check(bucket)
        if items:
            self._settle_algorithm(items[0][1])

    def _guard_failed(self) -> bool:
        """True once the bucket check or the probe failed, or the transfer was interrupted: a pass stops."""
        guard = self._guard
        failed = guard is not None and guard.done() and (guard.cancelled() or guard.exception() is not None)
        return failed or self.cancel.is_set()

    def _settled(self, bucket: str) -> str:
        """The part check in force: an upload waits for its bucket check and probe (Cancelled if they failed:
        run() raises their error); a plan only reads the remembered answer (_settle_algorithm, no request)."""
        guard = self._guard
        if guard is None:
            return self._settle_algorithm(bucket, probe=False)
        try:
            guard.result()
        except BaseException:
            raise Cancelled() from None
        return self.algorithm

    def _expected_algorithm(self, bucket: str) -> str:
        """The part check an upload's probe is expected to settle on, for a pass that starts before it answers:
        the settled one, else what this process or a remembered record found; with neither, the answer itself
        (waited for). Only a guess: the pass is made again if the answer differs (_pass_beside_requests), never
        trusted in its place."""
        guard = self._guard
        if guard is None or guard.done() or self.algorithm != SIGNED_OR_MD5:
            return self._settled(bucket)
        if getattr(self.store, "probe_signed_payload", None) is None:
            return "md5"
        from jobsub.transfer import probes

        known = probes.asked_in_this_process(self.store.description, probes.load_answer)
        if known is None:  # nothing to go on (a first upload to this endpoint): wait for the answer, as a
            return self._settled(bucket)  # wrong guess would cost a second read of the whole file
        return SIGNED_SHA256 if known else "md5"

    def close(self) -> None:
        """Stop the part pool (a plan-only uploader never starts a part)."""
        self._parts.shutdown(wait=False, cancel_futures=True)

    # -- one file ----------------------------------------------------------------------------------------
    def _upload_file(self, item: UploadItem) -> str:
        try:
            return self._upload_file_once(item)
        except ChecksumUnsupportedError as exc:
            with self._fallback_lock:
                if self.algorithm == "md5":
                    raise
                self.hub.emit("message", text=f"{exc}; falling back to MD5 (Content-MD5) for this run")
                self.algorithm = "md5"
            return self._upload_file_once(item)

    def _settle_algorithm(self, bucket: str, probe: bool = True) -> str:
        """`auto` on a non-AWS endpoint: a signed per-part SHA-256 where the server was shown to refuse a body
        that does not match it, else MD5 + Content-MD5 (checked by the server or by the ETag comparison).

        An upload asks the server once per process (S3Store.probe_signed_payload: one tiny PutObject, refused
        on a verifying server, deleted at once on any other); the answer is also written down per endpoint
        (transfer/probes.py) for plans only. An unknown answer (no permission to write, an outage) keeps MD5
        for this process and is not written down.

        ``probe=False`` (a plan only, e.g. `upload --dry-run`, which sends nothing): the remembered answer,
        else MD5 for this plan without settling; the upload that carries the plan out asks the server, and a
        plan whose part check then differs is made again (Uploader._earlier_plan).
        """
        with self._settle_lock:
            if self.algorithm != SIGNED_OR_MD5:
                return self.algorithm
            ask = getattr(self.store, "probe_signed_payload", None)
            verifies: bool | None = None
            if ask is not None:
                from jobsub.transfer import probes

                endpoint = self.store.description
                if not probe:  # a plan only: what this process or an earlier run found, never a request;
                    # read once per uploader (every file of a plan gets the same check), left unsettled
                    if self._plan_check is None:
                        known = probes.asked_in_this_process(endpoint, probes.load_answer)
                        self._plan_check = SIGNED_SHA256 if known else "md5"
                    return self._plan_check
                else:  # an upload asks the server itself, once per process: a remembered "verifies" could
                    # outlive the server behind the URL (a tunnel, a swap) and leave parts unchecked
                    verifies = probes.ask_once(endpoint, lambda: ask(bucket))
            self.algorithm = SIGNED_SHA256 if verifies else "md5"
            return self.algorithm

    def plan(self, items: list[UploadItem]) -> UploadPlan:
        """The whole upload's plan; sends nothing (HEAD, ListParts, ListMultipartUploads and local reads only).
        Files are planned on `concurrency` threads, in order (a folder of 5,000 files is 5,000 HEADs: in a
        row they would cost the estimate a minute over a slow link).

        With `auto` on a non-AWS endpoint the per-part check is the remembered answer for the endpoint, or
        MD5 until an upload has asked the server (_settle_algorithm)."""
        if len(items) <= 1:
            return UploadPlan([self.plan_file(item) for item in items])
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(items))) as pool:
            return UploadPlan(list(pool.map(self.plan_file, items)))

    def plan_file(self, item: UploadItem, adopt: bool = True) -> FilePlan:
        """Decide what one file needs: skip, one PUT, a local copy, or which parts of a multipart upload.

        Read-only by contract (``upload --dry-run`` relies on it): a stale journal or a vanished upload is
        only noted here; aborting it and forgetting the journal happen when the plan is carried out.
        """
        path, bucket, key = item
        stat = stable_stat(path)
        size = stat.st_size
        base: dict[str, Any] = {"source": str(path), "bucket": bucket, "key": key, "size": size, "stat": stat}
        if hasattr(self.store, "stage_file"):
            self._settled(bucket)
            existing = self.store.head(bucket, key)
            known = cached_sha256(path, stat) if existing and existing.size == size else None
            if existing and known and existing.metadata.get(SHA256_META) == known:
                return FilePlan(**base, action="skip", reason="unchanged (same SHA-256)", sha256=known)
            return FilePlan(**base, action="copy", reason="changed" if existing else "new", part_check="sha256")
        multipart = size > self.options.multipart_threshold
        part_size = plan_part_size(size, self.options.part_size)
        part_sums: dict[int, Checksum] = {}
        listed: Future[list[UploadInfo]] | None = None
        sha = lookup_sha256(path, stat)
        if sha is None and multipart and self._guard is not None:  # an upload: its pass beside its requests
            sha, part_sums, algorithm, existing, listed = self._pass_beside_requests(item, stat, part_size, adopt)
        else:
            algorithm = self._settled(bucket)  # a plan: the remembered answer or MD5; an upload: the probe's
            existing = self.store.head(bucket, key)
            if sha is None and multipart:  # one read for the SHA-256 and the part checksums
                sha, part_sums = sha256_and_parts(path, stat, algorithm, part_ranges(size, part_size))
            elif sha is None:
                sha = cached_sha256(path, stat)
        if existing and existing.size == size and existing.metadata.get(SHA256_META) == sha:
            return FilePlan(**base, action="skip", reason="unchanged (same SHA-256)", sha256=sha)
        reason = "changed" if existing else "new"
        if not multipart:
            return FilePlan(**base, action="put", reason=reason, sha256=sha, part_check=algorithm)
        plan = FilePlan(
            **base, action="multipart", reason=reason, sha256=sha, part_size=part_size, part_check=algorithm
        )
        plan.part_checksums = part_sums
        return self._plan_multipart(plan, adopt, listed)

    def _pass_beside_requests(
        self, item: UploadItem, stat: os.stat_result, part_size: int, adopt: bool
    ) -> tuple[str, dict[int, Checksum], str, ObjectInfo | None, Future[list[UploadInfo]] | None]:
        """An upload's one hash pass (whole-file SHA-256 and part checks from the same read), with the requests
        that do not need its result in flight meanwhile: HEAD (is the object there already?), with no journal
        ListMultipartUploads (an interrupted upload to adopt), and for the first files the bucket check and
        the probe (run()). Each still decides what it did: the object's SHA-256 is compared after the pass,
        an orphan's parts are re-read and checked (_adopt_orphan), a failed bucket check stops the pass
        (Cancelled; run() raises its error), and the part check is the probe's answer: a pass made with
        another (the expected one, _expected_algorithm) is made again, whole, with the answer.

        Returns (SHA-256, part checksums, part check, the HEAD's answer, the pending uploads' future).
        """
        path, bucket, key = item
        assert self._requests is not None
        head = self._requests.submit(self.store.head, bucket, key)
        listed: Future[list[UploadInfo]] | None = None
        if adopt:
            try:
                journal = UploadJournal.path_for(str(path), self.store.description, bucket, key).exists()
            except (OSError, JobsubError):
                journal = True  # _plan_multipart finds out, as before
            if not journal:
                listed = self._requests.submit(self.store.list_uploads, bucket, key)
        ranges = part_ranges(stat.st_size, part_size)
        expected = self._expected_algorithm(bucket)
        try:
            sha, sums = sha256_and_parts(path, stat, expected, ranges, stop=self._guard_failed)
        except Cancelled:
            self._settled(bucket)  # the bucket check's or the probe's failure (run() raises it), or Ctrl-C
            raise
        algorithm = self._settled(bucket)
        if algorithm != expected:  # the probe answered otherwise: the same one read, with the right check
            sha, sums = sha256_and_parts(path, stat, algorithm, ranges, stop=self._guard_failed)
        return sha, sums, algorithm, head.result(), listed

    def _plan_multipart(self, plan: FilePlan, adopt: bool, listed: Future[list[UploadInfo]] | None = None) -> FilePlan:
        assert plan.stat is not None and plan.sha256 is not None
        ranges = part_ranges(plan.size, plan.part_size)
        plan.parts = len(ranges)
        journal = UploadJournal.load(UploadJournal.path_for(plan.source, self.store.description, plan.bucket, plan.key))
        if journal and (
            not journal.matches_source(plan.stat, plan.part_size, plan.part_check) or journal.sha256 != plan.sha256
        ):
            plan.stale_journal, plan.abort_upload_id = journal, journal.upload_id
            if journal.algorithm != plan.part_check and journal.matches_source(
                plan.stat, plan.part_size, journal.algorithm
            ):  # the same bytes, checked another way: never mix two per-part checks in one upload
                plan.reason = (
                    f"its interrupted upload checked parts by {journal.algorithm}, this run by {plan.part_check} "
                    "(that upload is aborted first)"
                )
            else:
                plan.reason = "changed since its interrupted upload (that upload is aborted first)"
            journal = None
        fd = os.open(plan.source, os.O_RDONLY)
        try:
            if journal:
                try:
                    server_parts = self.store.list_parts(plan.bucket, plan.key, journal.upload_id)
                    plan.reused_parts = self._verify_parts(fd, server_parts, ranges, journal.parts, plan.part_check)
                    plan.journal, plan.upload_id, plan.resumed_from = journal, journal.upload_id, "journal"
                except UploadNotFoundError:
                    plan.stale_journal = journal
                    plan.reason = f"its interrupted upload {journal.upload_id} no longer exists on the server"
            if plan.journal is None and adopt:
                found = self._adopt_orphan(
                    fd, plan.bucket, plan.key, ranges, plan.part_check, exclude=plan.abort_upload_id, listed=listed
                )
                plan.upload_id, plan.reused_parts = found
                plan.resumed_from = "pending" if plan.upload_id else ""
        finally:
            os.close(fd)
        plan.reused = sorted(plan.reused_parts)
        if plan.upload_id:
            plan.reason = f"resume upload {plan.upload_id}: {len(plan.reused)} of {plan.parts} parts on the server"
        return plan

    def _upload_file_once(self, item: UploadItem) -> str:
        """Plan, then carry the plan out; an adopted upload that proves foreign is planned once more, fresh."""
        if self.cancel.is_set():
            raise Cancelled()
        report = self.hub.progress_for(str(item[0]))
        outcome = self.carry_out(self._earlier_plan(item) or self.plan_file(item), report)
        if outcome == "restart":
            self.hub.emit("message", text=f"{item[0]}: the adopted upload carried another checksum; uploading again")
            outcome = self.carry_out(self.plan_file(item, adopt=False), report)
        return outcome

    def _earlier_plan(self, item: UploadItem) -> FilePlan | None:
        """The plan made earlier for this file, if the file is still the one it was made for (same size,
        mtime, ctime, inode) and with the same checksum algorithm; else None and the file is planned afresh."""
        with self._planned_lock:
            plan = self._planned.pop(item, None)
        if plan is None or plan.stat is None:
            return None
        self._settled(item[1])  # the bucket check and the probe first: the plan's check is compared with it
        try:
            now = stable_stat(item[0])
        except OSError:
            return None
        same_algorithm = (
            plan.part_check in ("", self.algorithm, "sha256")  # sha256: a local copy, whatever the algorithm
            and all(c.algorithm == self.algorithm for c in plan.part_checksums.values())
            and (plan.journal is None or plan.journal.algorithm == self.algorithm)
        )
        return plan if identity(now) == identity(plan.stat) and same_algorithm else None

    def carry_out(self, plan: FilePlan, report) -> str:
        """Do exactly what the plan says: its parts, its requests (plus retries), nothing it did not foresee."""
        assert plan.stat is not None
        path = Path(plan.source)
        if plan.action == "skip":
            report(plan.size)
            self.summary.verified(plan.source, "sha256")
            return "skipped"
        if plan.action == "copy":
            return self._put_local(path, plan.stat, plan.bucket, plan.key, report)
        if plan.action == "put":
            return self._put_small(path, plan.stat, plan.bucket, plan.key, report)
        return self._put_multipart(plan, report)

    def _stop(self) -> bool:
        return self.cancel.is_set()

    def _put_local(self, path: Path, stat: os.stat_result, bucket: str, key: str, report) -> str:
        """A local store: one read of the source that copies and hashes; unchanged objects are not rewritten."""
        store: Any = self.store
        label = str(path)

        def progress(n: int) -> None:
            self.limiter.consume(n, self._stop)
            report(n)

        with open(path, "rb") as fh:
            staged = store.stage_file(fh.fileno(), stat.st_size, progress)
        try:
            _check_unchanged(path, stat)
            if staged.size != stat.st_size:
                raise _changed(path)
            remember_sha256(path, stat, staged.sha256)
            store.commit_staged(staged, bucket, key, {SHA256_META: staged.sha256})
        except BaseException:
            store.discard_staged(staged)
            raise
        self.summary.add(parts_sent=1, bytes_transferred=staged.size, requests=1)
        self.summary.verified(label, "sha256")
        return "uploaded"

    @staticmethod
    def _md5_of(fd: int, offset: int, length: int) -> str:
        return Checksum.of_range("md5", fd, offset, length).hex

    def _part_checksum(
        self, data: bytes | None, fd: int = -1, offset: int = 0, length: int = 0, algorithm: str = ""
    ) -> Checksum:
        """A part's checksum by ``algorithm`` (a plan's part check), else by the run's settled algorithm."""
        if data is not None:
            return Checksum.of_bytes(algorithm or self.algorithm, data)
        return Checksum.of_range(algorithm or self.algorithm, fd, offset, length)

    def _put_small(self, path: Path, stat: os.stat_result, bucket: str, key: str, report) -> str:
        self.limiter.consume(stat.st_size, self._stop)
        with open(path, "rb") as fh:
            data = fh.read()
        _check_unchanged(path, stat)
        if len(data) != stat.st_size:
            raise _changed(path)
        digest = hashlib.sha256(data).digest()  # from the bytes we send, whatever the cache said
        sha = digest.hex()
        if self.algorithm == SIGNED_SHA256:  # one object, one part: its SHA-256 is the signed payload hash
            checksum = Checksum(SIGNED_SHA256, base64.b64encode(digest).decode())
        else:
            checksum = self._part_checksum(data)

        def send(progress) -> str:
            etag = self.store.put(bucket, key, data, {SHA256_META: sha}, progress, checksum)
            if checksum.is_md5 and etag_is_md5(etag) and etag.lower() != checksum.hex:
                raise IntegrityError(f"s3://{bucket}/{key} was stored with ETag {etag}, not our MD5")
            return etag

        with_retries(send, report, self.options, self._stop)
        remember_sha256(path, stat, sha)
        self.summary.add(parts_sent=1, bytes_transferred=len(data), requests=1)
        self.summary.verified(str(path), checksum.algorithm)
        _check_unchanged(path, stat)
        return "uploaded"

    def _put_multipart(self, plan: FilePlan, report) -> str:
        """Carry out a multipart plan: abort what it names stale, resume or create, send the missing parts."""
        assert plan.stat is not None and plan.sha256 is not None
        path, stat, bucket, key, sha = Path(plan.source), plan.stat, plan.bucket, plan.key, plan.sha256
        label = plan.source
        ranges = part_ranges(plan.size, plan.part_size)
        if plan.stale_journal is not None:
            if plan.abort_upload_id:
                self.hub.emit(
                    "message",
                    text=f"{label} changed since its interrupted upload: aborting upload {plan.abort_upload_id} "
                    "and starting again",
                )
                self._abort_quietly(bucket, key, plan.abort_upload_id)
                self.summary.add(requests=1)
            else:
                stale = plan.stale_journal.upload_id
                text = f"upload {stale} of {label} no longer exists on the server: starting again"
                self.hub.emit("message", text=text)
            plan.stale_journal.delete()
        reused: dict[int, tuple[str, Checksum]] = dict(plan.reused_parts)
        journal: UploadJournal | None = plan.journal
        if journal is None:
            upload_id = plan.upload_id
            if upload_id:
                self.hub.emit("message", text=f"found pending upload {upload_id} of s3://{bucket}/{key}: resuming it")
            else:
                upload_id = self.store.create_multipart(
                    bucket, key, {SHA256_META: sha}, checksum_algorithm=self.algorithm
                )
                self.summary.add(requests=1)
            journal = UploadJournal(
                source=label,
                size=plan.size,
                mtime_ns=stat.st_mtime_ns,
                ctime_ns=stat.st_ctime_ns,
                inode=stat.st_ino,
                algorithm=self.algorithm,
                bucket=bucket,
                key=key,
                part_size=plan.part_size,
                sha256=sha,
                upload_id=upload_id,
                store=self.store.description,
                parts={str(n): c.value for n, (_, c) in reused.items()},
            )
            journal.save()
        if reused:
            self.hub.emit(
                "message", text=f"resuming {label}: {len(reused)} of {len(ranges)} parts already on the server"
            )
            report(plan.bytes_reused)
        fd = os.open(path, os.O_RDONLY)
        try:
            done = dict(reused)
            missing = [r for r in ranges if r[0] not in reused]
            done.update(self._send_parts(fd, journal, missing, report, plan.part_checksums))
            self.summary.add(parts_reused=len(reused))
            try:
                _check_unchanged(path, stat)
            except SourceChangedError:
                self._abort_quietly(bucket, key, journal.upload_id)
                journal.delete()
                raise
            etags = sorted((n, etag) for n, (etag, _) in done.items())
            checksums = {n: c for n, (_, c) in done.items()}
            self.store.complete_multipart(bucket, key, journal.upload_id, etags, checksums=checksums)
            self.summary.add(requests=1)
        finally:
            os.close(fd)
        head = self.store.head(bucket, key)
        stored_sha = head.metadata.get(SHA256_META) if head else None
        if head is None or head.size != plan.size:
            raise IntegrityError(f"s3://{bucket}/{key} has the wrong size after completion; run the upload again")
        journal.delete()
        if stored_sha != sha:
            if plan.resumed_from == "pending":  # the adopted upload was created for other contents: plan again
                return "restart"
            raise IntegrityError(f"s3://{bucket}/{key} lacks the SHA-256 we sent; run the upload again")
        self.summary.verified(label, self.algorithm)
        return "resumed" if reused else "uploaded"

    def _send_parts(
        self,
        fd: int,
        journal: UploadJournal,
        ranges: list[tuple[int, int, int]],
        report,
        known: dict[int, Checksum] | None = None,
    ) -> dict[int, tuple[str, Checksum]]:
        """Send the parts; ``known``: checksums made in the plan's SHA-256 pass (each byte read once more,
        as it is sent; a part whose bytes changed since is refused by the ETag/Content-MD5 check)."""
        failed = threading.Event()

        def stop() -> bool:
            return self.cancel.is_set() or failed.is_set()

        def send_part(number: int, offset: int, length: int) -> tuple[int, tuple[str, Checksum]]:
            if stop():
                raise Cancelled()
            self.limiter.consume(length, stop)
            if os.fstat(fd).st_size < offset + length:
                raise _changed(Path(journal.source))
            # without a checksum from the plan's pass (a cached SHA-256) the part is read twice from the page
            # cache (checksum, then as it is sent) instead of being held: memory is socket buffers, not parts
            checksum = (known or {}).get(number)
            if checksum is None or checksum.algorithm != self.algorithm:
                checksum = self._part_checksum(None, fd, offset, length)
            body = FileRange(fd, offset, length)

            def send(progress) -> str:
                etag = self.store.upload_part(
                    journal.bucket, journal.key, journal.upload_id, number, body, checksum, progress
                )
                if checksum.is_md5 and etag_is_md5(etag) and etag.lower() != checksum.hex:
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
            journal.record_part(number, checksum.value)
            self.summary.add(parts_sent=1, bytes_transferred=length, requests=1)
            return number, (etag, checksum)

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
        self,
        fd: int,
        server_parts: list[PartInfo],
        ranges: list[tuple[int, int, int]],
        known: dict[str, str],
        algorithm: str,
    ) -> dict[int, tuple[str, Checksum]]:
        """Parts on the server that hold exactly our bytes, each re-read from the file and checked.

        The fresh checksum of the file's range must equal what the server says it holds (an MD5 ETag or the
        part's flexible checksum); when the server says nothing comparable, it must equal what the journal
        recorded as sent. A journal alone never vouches for bytes the file no longer has.
        """
        expected = {n: (offset, length) for n, offset, length in ranges}
        good: dict[int, tuple[str, Checksum]] = {}
        for part in server_parts:
            if part.number not in expected or part.size != expected[part.number][1]:
                continue
            # re-read now, never the plan's; by the plan's part check (a plan-only run has not settled `auto`)
            ours = self._part_checksum(None, fd, *expected[part.number], algorithm=algorithm)
            server = part.checksums.get(ours.algorithm)
            if ours.is_signed and etag_is_md5(part.etag):
                # the server checked the signed hash when the part came; what it confirms now is the ETag it
                # computed from the bytes it holds, so a reused part is compared by its MD5 (resume only)
                ok = part.etag.lower() == self._md5_of(fd, *expected[part.number])
            elif ours.is_md5 and etag_is_md5(part.etag):
                ok = part.etag.lower() == ours.hex
            elif server:
                ok = server.split("-")[0] == ours.value
            else:  # an ETag that is no MD5 (encryption) and no listed checksum: what we recorded as sent
                ok = known.get(str(part.number)) == ours.value
            if ok:
                good[part.number] = (part.etag, ours)
        return good

    def _adopt_orphan(
        self,
        fd: int,
        bucket: str,
        key: str,
        ranges: list[tuple[int, int, int]],
        algorithm: str,
        exclude: str = "",
        listed: Future[list[UploadInfo]] | None = None,
    ) -> tuple[str, dict[int, tuple[str, Checksum]]]:
        """With no journal, a pending upload of this key whose parts all hold our bytes is resumed, not resent.

        ``exclude``: the upload the plan aborts (a stale journal's), never adopted. ``listed``: the pending
        uploads, asked while the file was hashed (_pass_beside_requests); their parts are listed and re-read now.
        """
        try:
            uploads = listed.result() if listed is not None else self.store.list_uploads(bucket, key)
            pending = [u for u in uploads if u.key == key and u.upload_id != exclude]
        except StorageError:
            return "", {}
        for upload in sorted(pending, key=lambda u: str(u.initiated), reverse=True):
            try:
                parts = self.store.list_parts(bucket, key, upload.upload_id)
            except StorageError:
                continue
            good = self._verify_parts(fd, parts, ranges, {}, algorithm)
            if parts and len(good) == len(parts):
                return upload.upload_id, good
        return "", {}

    def _abort_quietly(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self.store.abort_multipart(bucket, key, upload_id)
        except StorageError:
            pass
