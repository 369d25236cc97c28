"""LocalStore: S3 semantics in a folder, so the default profile runs the same transfer engine and job records.

Layout under the root::

    <bucket>/<key>                          object bytes, browsable with a file manager
    .jobsub/meta/<bucket>/<key>.json        size, mtime, ETag and user metadata of the object
    .jobsub/uploads/<bucket>/<id>/          pending multipart uploads: upload.json + NNNNN-<md5>.part
    .jobsub/tmp/                            staging for atomic writes (same filesystem, so os.replace is atomic)
    .jobsub/locks/<bucket>/<sha1(key)>      one lock file per key: data + metadata change under it, as a unit

Buckets are folders and are created on first write: the embedded default needs no setup. The store is
private by default (folders 0700, files 0600 whatever the umask); ``shared=True`` makes new folders 0770
and files 0660 for a store a group shares on purpose.
"""

from __future__ import annotations

import base64
import builtins
import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobsub.config import private_mkdir
from jobsub.errors import (
    BucketNotFoundError,
    IntegrityError,
    InvalidURIError,
    ObjectNotFoundError,
    StorageError,
    UploadNotFoundError,
)
from jobsub.storage.base import (
    SHA256_META,
    FileRange,
    ListResult,
    ObjectInfo,
    PartData,
    PartInfo,
    ProgressCallback,
    UploadInfo,
)
from jobsub.storage.checksums import Checksum
from jobsub.uri import key_problem, validate_bucket, validate_key

_INTERNAL = ".jobsub"


_COPY_CHUNK = 8 << 20
#: copy_file_range cannot copy these files here (another filesystem on an older kernel, no such call, a
#: filesystem without it): the copy goes through this process instead
_NO_COPY_FILE_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY}


def _checksum_matches(data: bytes, data_md5: bytes, checksum: Checksum | None) -> bool:
    """The caller's checksum of the bytes it handed over (any algorithm; MD5 from the digest already made)."""
    if checksum is None:
        return True
    if checksum.is_md5:
        return base64.b64encode(data_md5).decode() == checksum.value
    return checksum.matches(data)


def _stat_matches(meta: dict[str, Any], stat: os.stat_result) -> bool:
    return bool(
        meta.get("size") == stat.st_size
        and meta.get("mtime_ns") == stat.st_mtime_ns
        and meta.get("ino", stat.st_ino) == stat.st_ino
    )


def _recorded_checksum(meta: dict[str, Any]) -> tuple[str, str] | None:
    """(algorithm, hex) of the whole object as stored: its ETag when that is a digest this store computed from
    the bytes (64 hex digits: SHA-256 of a staged copy; 32: MD5 of a single put), else the SHA-256 the uploader
    put in its metadata (multipart objects, whose ETag is an MD5 of MD5s)."""
    etag = str(meta.get("etag", "")).strip('"').lower()
    if len(etag) in (32, 64) and all(c in "0123456789abcdef" for c in etag):
        return ("sha256" if len(etag) == 64 else "md5"), etag
    metadata = meta.get("metadata")
    sha = metadata.get(SHA256_META) if isinstance(metadata, dict) else None
    if isinstance(sha, str) and len(sha) == 64:
        return "sha256", sha.lower()
    return None


_ALGORITHM_NAMES = {"sha256": "SHA-256", "md5": "MD5"}


def _changed_on_disk(bucket: str, key: str, path: Path, algorithm: str) -> str:
    return (
        f"s3://{bucket}/{key} ({path}) changed on disk after it was stored: its {_ALGORITHM_NAMES[algorithm]} "
        f"no longer matches the recorded one, so it is damaged; upload it again or remove it"
    )


@dataclass
class StagedFile:
    """A source copied into the store's staging area, not yet visible; its SHA-256 from the same read."""

    tmp: Path
    size: int
    sha256: str


class LocalStore:
    checksum_algorithm = "md5"  # parts are named by their MD5 (storage.checksums.profile_algorithm)

    def __init__(self, root: Path, shared: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.description = f"local folder {self.root}"
        self._tmp = self.root / _INTERNAL / "tmp"
        self._dir_mode = 0o770 if shared else 0o700
        self._file_mode = 0o660 if shared else 0o600

    # -- modes and locks ---------------------------------------------------------------------------------
    def _mkdir(self, path: Path) -> None:
        private_mkdir(path, self._dir_mode)

    def _new_file(self, path: Path) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self._file_mode)
        os.fchmod(fd, self._file_mode)
        return fd

    def _write_new(self, path: Path, data: bytes) -> None:
        fd = self._new_file(path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)

    @contextmanager
    def _key_lock(self, bucket: str, key: str, shared: bool = False) -> Iterator[None]:
        """Writers of one key take it exclusively, readers of data + metadata shared: never a torn pair."""
        import fcntl

        folder = self.root / _INTERNAL / "locks" / bucket
        try:
            self._mkdir(folder)
            fd = os.open(folder / hashlib.sha1(key.encode()).hexdigest(), os.O_RDWR | os.O_CREAT, self._file_mode)
        except OSError as exc:
            if not shared or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            yield  # a reader that may not create lock files (a read-only mount) reads unlocked, as before locks
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- paths -------------------------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str, create: bool = False) -> Path:
        validate_bucket(bucket)
        path = self.root / bucket
        if create:
            self._mkdir(path)
        elif not path.is_dir():
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist in {self.description}")
        return path

    def _object_path(self, bucket: str, key: str, create: bool = False) -> Path:
        validate_key(key)
        if not key or key.endswith("/"):
            raise InvalidURIError(f"invalid object key {key!r}: a local object key cannot end with '/'")
        return self._bucket_dir(bucket, create) / key

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self.root / _INTERNAL / "meta" / bucket / (key + ".json")

    def _upload_dir(self, bucket: str, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise UploadNotFoundError(f"no multipart upload {upload_id!r}")
        return self.root / _INTERNAL / "uploads" / bucket / upload_id

    def _tmp_path(self) -> Path:
        self._mkdir(self._tmp)
        return self._tmp / uuid.uuid4().hex

    def _write_atomic(self, dest: Path, data: bytes) -> None:
        self._mkdir(dest.parent)
        tmp = self._tmp_path()
        self._write_new(tmp, data)
        os.replace(tmp, dest)

    def _place(self, tmp: Path, bucket: str, key: str, etag: str, metadata: dict[str, str] | None) -> None:
        """Make ``tmp`` the object and write its metadata, both under the key's lock (one writer at a time)."""
        dest = self._object_path(bucket, key, create=True)
        with self._key_lock(bucket, key):
            try:
                self._mkdir(dest.parent)
                os.replace(tmp, dest)
            except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
                tmp.unlink(missing_ok=True)
                raise StorageError(
                    f"cannot store s3://{bucket}/{key} in a local folder: a key is both an object and a prefix ({exc})"
                ) from None
            stat = dest.stat()
            meta = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "ino": stat.st_ino,
                "etag": etag,
                "metadata": metadata or {},
            }
            self._write_atomic(self._meta_path(bucket, key), json.dumps(meta).encode())

    # -- one-pass local copies ---------------------------------------------------------------------------
    def stage_file(self, fd: int, size: int, progress: ProgressCallback | None = None) -> StagedFile:
        """Copy ``size`` bytes of an open file into staging and return the SHA-256 of what was stored.

        The source is read once: by copy_file_range in the kernel where the filesystem offers it (as `cp`
        does), else by our own reads. The hash is taken from the staged copy itself, a chunk behind the copy
        in a helper thread (from the page cache), so it describes exactly the bytes the object will hold.
        """
        tmp = self._tmp_path()
        out = self._new_file(tmp)
        sha = hashlib.sha256()
        reader = os.open(tmp, os.O_RDONLY)

        def hash_range(offset: int, length: int) -> None:
            end = offset + length
            while offset < end:
                chunk = os.pread(reader, min(_COPY_CHUNK, end - offset), offset)
                if not chunk:
                    raise StorageError("staged copy shorter than written; run the command again")
                sha.update(chunk)
                offset += len(chunk)

        offset = 0
        kernel_copy = hasattr(os, "copy_file_range")
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash") as hasher:
                pending = []
                while offset < size:
                    want = min(_COPY_CHUNK, size - offset)
                    got = 0
                    if kernel_copy:
                        try:
                            got = os.copy_file_range(fd, out, want, offset, offset)
                        except OSError:  # another filesystem, or none of that here: plain reads
                            kernel_copy = False
                    if not kernel_copy:
                        data = os.pread(fd, want, offset)
                        got = len(data)
                        view = memoryview(data)
                        while view:
                            view = view[os.pwrite(out, view, offset + got - len(view)) :]
                    if got == 0:
                        raise StorageError("source shrank while copying; run the command again")
                    pending.append(hasher.submit(hash_range, offset, got))
                    offset += got
                    if progress:
                        progress(got)
                    while pending and pending[0].done():
                        pending.pop(0).result()
                for future in pending:
                    future.result()
        except BaseException:
            os.close(out)
            os.close(reader)
            tmp.unlink(missing_ok=True)
            raise
        os.close(out)
        os.close(reader)
        return StagedFile(tmp, offset, sha.hexdigest())

    def commit_staged(self, staged: StagedFile, bucket: str, key: str, metadata: dict[str, str] | None) -> str:
        """Publish a staged copy; its ETag is the SHA-256 (64 hex digits, so never mistaken for an MD5)."""
        self._place(staged.tmp, bucket, key, staged.sha256, metadata)
        return staged.sha256

    def discard_staged(self, staged: StagedFile) -> None:
        staged.tmp.unlink(missing_ok=True)

    # -- objects -----------------------------------------------------------------------------------------
    def check_bucket(self, bucket: str) -> None:
        """Local buckets are created on first write, so any valid name is usable."""
        validate_bucket(bucket)

    def list_buckets(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != _INTERNAL)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's size, ETag and metadata as recorded when it was stored.

        Bytes changed on disk after they were stored (another program, a flipped bit, a restored backup) are
        never passed off as the stored object: when the file's size, mtime or inode differ from the record,
        its SHA-256 (or MD5) is computed once and compared with the recorded one. A match (a `touch`, a copy
        that kept the bytes) updates the record; a mismatch raises IntegrityError, as a bad S3 object does.
        Unchanged files cost nothing here: readers hash the bytes they read (the download engine checks the
        recorded SHA-256, ``get`` the recorded checksum)."""
        try:
            path = self._object_path(bucket, key)
        except BucketNotFoundError:
            return None  # local buckets spring into being on first write
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        with self._key_lock(bucket, key, shared=True):
            try:
                stat = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            meta = self._read_meta(bucket, key)
        info = ObjectInfo(key, stat.st_size, last_modified=datetime.fromtimestamp(stat.st_mtime, timezone.utc))
        if meta and not _stat_matches(meta, stat):
            meta = self._recheck(bucket, key, path, meta)
        if meta:
            info.etag = str(meta.get("etag", ""))
            info.metadata = dict(meta.get("metadata", {}))
        return info

    def _read_meta(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            meta = json.loads(self._meta_path(bucket, key).read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _recheck(self, bucket: str, key: str, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """The file changed on disk since it was stored: compare its bytes with the recorded checksum once.
        Returns the record (refreshed when the bytes are the same), {} when nothing recorded can tell."""
        expected = _recorded_checksum(meta)
        if expected is None:
            return {}  # no whole-object checksum on record (an old multipart ETag): say "size only"
        try:
            with self._key_lock(bucket, key):  # the bytes and the record as one unit while we compare
                return self._compare(bucket, key, path, meta, expected, refresh=True)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            return self._compare(bucket, key, path, meta, expected, refresh=False)  # a read-only view of the store

    def _compare(
        self, bucket: str, key: str, path: Path, meta: dict[str, Any], expected: tuple[str, str], refresh: bool
    ) -> dict[str, Any]:
        """Hash the file and compare it with the record: IntegrityError when it differs."""
        current = self._read_meta(bucket, key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return {}
        if current and _stat_matches(current, stat):
            return current  # rewritten through the store meanwhile
        algorithm, value = expected
        digest = hashlib.new(algorithm)
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_COPY_CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != value:
            raise IntegrityError(_changed_on_disk(bucket, key, path, algorithm))
        meta = {**meta, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ino": stat.st_ino}
        if refresh:
            self._write_atomic(self._meta_path(bucket, key), json.dumps(meta).encode())
        return meta

    def get_range(
        self, bucket: str, key: str, start: int, length: int, progress: ProgressCallback | None = None
    ) -> bytes:
        path = self._object_path(bucket, key)
        try:
            with path.open("rb") as fh:
                data = os.pread(fh.fileno(), length, start)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object s3://{bucket}/{key} in {self.description}") from None
        if progress:
            progress(len(data))
        return data

    def copy_range_to(
        self, bucket: str, key: str, start: int, length: int, fd: int, progress: ProgressCallback | None = None
    ) -> int:
        """Copy the object's bytes [start, start + length) into `fd` at the same offset, in the kernel
        (`copy_file_range`: no copy through this process, as `cp` does); where the kernel cannot (another
        filesystem on an older kernel, or no such call) it falls back to pread + pwrite. Returns the bytes
        copied: fewer than `length` when the object is shorter than its record says (the caller's short
        read). The download still verifies the whole file's SHA-256 from the destination afterwards."""
        path = self._object_path(bucket, key)
        try:
            src = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object s3://{bucket}/{key} in {self.description}") from None
        copied = 0
        try:
            in_kernel = hasattr(os, "copy_file_range")
            while copied < length:
                at = start + copied
                count = min(_COPY_CHUNK, length - copied)
                n = 0
                if in_kernel:
                    try:
                        n = os.copy_file_range(src, fd, count, at, at)
                    except OSError as exc:
                        if exc.errno not in _NO_COPY_FILE_RANGE:
                            raise
                        in_kernel = False
                    if not n:  # 0 where bytes remain: some FUSE and network filesystems; plain reads decide
                        in_kernel = False
                if not in_kernel:
                    data = os.pread(src, count, at)
                    n = os.pwrite(fd, data, at) if data else 0
                if not n:
                    break  # the object ends early
                copied += n
                if progress:
                    progress(n)
        finally:
            os.close(src)
        return copied

    def get(self, bucket: str, key: str) -> bytes:
        """The whole object, checked against the checksum recorded when it was stored (hashed from the bytes
        just read: records and archives are small), so a changed file is refused, never returned."""
        try:  # like head(): a bucket nobody wrote to yet (they are created on first write) holds no object
            path = self._object_path(bucket, key)
        except BucketNotFoundError:
            raise ObjectNotFoundError(f"no object s3://{bucket}/{key} in {self.description}") from None
        try:
            with self._key_lock(bucket, key, shared=True):
                data = path.read_bytes()
                meta = self._read_meta(bucket, key)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object s3://{bucket}/{key} in {self.description}") from None
        expected = _recorded_checksum(meta) if meta else None
        if expected is not None and hashlib.new(expected[0], data).hexdigest() != expected[1]:
            raise IntegrityError(_changed_on_disk(bucket, key, path, expected[0]))
        return data

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        metadata: dict[str, str] | None = None,
        progress: ProgressCallback | None = None,
        checksum: Checksum | None = None,
    ) -> str:
        """A local put checks the caller's checksum (any algorithm) against the bytes, as a server would."""
        digest = hashlib.md5(data).digest()
        if not _checksum_matches(data, digest, checksum):
            raise IntegrityError(f"checksum mismatch writing s3://{bucket}/{key}")
        tmp = self._tmp_path()
        self._write_new(tmp, data)
        self._place(tmp, bucket, key, digest.hex(), metadata)
        if progress:
            progress(len(data))
        return digest.hex()

    def put_if_absent(self, bucket: str, key: str, data: bytes) -> bool:
        """os.link refuses an existing name atomically, so two writers never both win."""
        dest = self._object_path(bucket, key, create=True)
        self._mkdir(dest.parent)
        tmp = self._tmp_path()
        self._write_new(tmp, data)
        with self._key_lock(bucket, key):  # data + metadata as one unit, like every other write
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            stat = dest.stat()
            meta = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "ino": stat.st_ino,
                "etag": hashlib.md5(data).hexdigest(),
                "metadata": {},
            }
            self._write_atomic(self._meta_path(bucket, key), json.dumps(meta).encode())
        return True

    def iter_objects(self, bucket: str, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        base = self._bucket_dir(bucket)
        # Walk only the deepest folder the prefix names, then filter: listing a job's logs stays cheap.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = base / folder if folder else base
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, base)
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if key.startswith(prefix) and key > start_after:
                    keys.append(key)
        for key in sorted(keys):
            if key_problem(key):  # a file another program put there: listed as it is, so readers refuse it
                yield ObjectInfo(key, (base / key).stat().st_size)
                continue
            try:
                info = self.head(bucket, key)
            except IntegrityError:  # listed as it is (no checksum to offer); reading it says what is wrong
                yield ObjectInfo(key, (base / key).stat().st_size)
                continue
            if info is not None:
                yield info

    def list(self, bucket: str, prefix: str = "", delimiter: str = "/") -> ListResult:
        objects: builtins.list[ObjectInfo] = []
        prefixes: set[str] = set()
        for info in self.iter_objects(bucket, prefix):
            rest = info.key[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                objects.append(info)
        return ListResult(objects, sorted(prefixes))

    def presigned_get_url(self, bucket: str, key: str, seconds: int) -> str | None:
        """None: a folder on this machine has no URLs (whoever reads it opens the store itself)."""
        return None

    def delete(self, bucket: str, key: str) -> None:
        path = self._object_path(bucket, key)
        with self._key_lock(bucket, key):
            path.unlink(missing_ok=True)
            self._meta_path(bucket, key).unlink(missing_ok=True)
        base = self._bucket_dir(bucket)
        parent = path.parent
        while parent != base:  # tidy empty folders, as S3 has no folders to leave behind
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    # -- multipart ---------------------------------------------------------------------------------------
    def create_multipart(
        self, bucket: str, key: str, metadata: dict[str, str] | None = None, checksum_algorithm: str | None = None
    ) -> str:
        self._object_path(bucket, key, create=True)
        upload_id = uuid.uuid4().hex
        folder = self._upload_dir(bucket, upload_id)
        self._mkdir(folder)
        record = {"key": key, "metadata": metadata or {}, "initiated": datetime.now(timezone.utc).isoformat()}
        self._write_atomic(folder / "upload.json", json.dumps(record).encode())
        return upload_id

    def _upload_record(self, bucket: str, upload_id: str) -> dict:
        try:
            return json.loads((self._upload_dir(bucket, upload_id) / "upload.json").read_text())
        except (OSError, ValueError):
            raise UploadNotFoundError(f"no multipart upload {upload_id} in bucket {bucket!r}") from None

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        data: PartData,
        checksum: Checksum,
        progress: ProgressCallback | None = None,
    ) -> str:
        self._upload_record(bucket, upload_id)
        if isinstance(data, FileRange):
            data = data.read(0, data.length)  # a local part is one file write; no network buffers to save
        digest = hashlib.md5(data).digest()
        if not _checksum_matches(data, digest, checksum):
            raise IntegrityError(f"checksum mismatch for part {number} of s3://{bucket}/{key}")
        folder = self._upload_dir(bucket, upload_id)
        for old in folder.glob(f"{number:05d}-*.part"):
            old.unlink(missing_ok=True)
        self._write_atomic(folder / f"{number:05d}-{digest.hex()}.part", data)
        if progress:
            progress(len(data))
        return digest.hex()

    def list_parts(self, bucket: str, key: str, upload_id: str) -> builtins.list[PartInfo]:
        self._upload_record(bucket, upload_id)
        parts = []
        for path in sorted(self._upload_dir(bucket, upload_id).glob("*.part")):
            number, etag = path.stem.split("-", 1)
            parts.append(PartInfo(int(number), path.stat().st_size, etag))
        return parts

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: builtins.list[tuple[int, str]],
        checksums: dict[int, Checksum] | None = None,
    ) -> str:
        record = self._upload_record(bucket, upload_id)
        folder = self._upload_dir(bucket, upload_id)
        tmp = self._tmp_path()
        md5s = b""
        with os.fdopen(self._new_file(tmp), "wb") as out:
            for number, etag in parts:
                part = folder / f"{number:05d}-{etag.strip(chr(34))}.part"
                if not part.exists():
                    tmp.unlink(missing_ok=True)
                    raise IntegrityError(f"part {number} of upload {upload_id} is missing or has another ETag")
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 8 << 20)
                md5s += bytes.fromhex(etag.strip('"'))
        etag = f"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"
        self._place(tmp, bucket, key, etag, record.get("metadata"))
        shutil.rmtree(folder, ignore_errors=True)
        return etag

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self._upload_record(bucket, upload_id)
        shutil.rmtree(self._upload_dir(bucket, upload_id), ignore_errors=True)

    def list_uploads(self, bucket: str, prefix: str = "") -> builtins.list[UploadInfo]:
        self._bucket_dir(bucket)
        folder = self.root / _INTERNAL / "uploads" / bucket
        uploads = []
        for path in sorted(folder.glob("*/upload.json")) if folder.is_dir() else []:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record["key"].startswith(prefix):
                initiated = datetime.fromisoformat(record["initiated"])
                uploads.append(UploadInfo(record["key"], path.parent.name, initiated))
        return uploads
