"""The upload resume journal: what was planned for one (source file, destination), replaced atomically.

The server stays the source of truth (ListParts); the journal only says which upload id belongs to which
source, with which part size, and the checksum of each part we sent (algorithm + base64 value). It may be
missing or stale, and the upload engine copes with both: a journal only matches a file whose identity (size,
mtime_ns, ctime_ns, inode) is unchanged, and every part it names is re-checked against the file's bytes
before it is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jobsub.config import state_dir, write_private


def journal_dir() -> Path:
    return state_dir() / "uploads"


@dataclass
class UploadJournal:
    source: str
    size: int
    mtime_ns: int
    bucket: str
    key: str
    part_size: int
    sha256: str
    upload_id: str
    store: str  # the store's description (endpoint or folder), to tell two servers apart
    ctime_ns: int = 0
    inode: int = 0
    algorithm: str = "md5"  # the per-part checksum algorithm of this upload
    created: float = field(default_factory=time.time)
    parts: dict[str, str] = field(default_factory=dict)  # part number -> base64 checksum (``algorithm``)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @staticmethod
    def path_for(source: str, store: str, bucket: str, key: str) -> Path:
        identity = f"{source}|{store}|{bucket}|{key}".encode()
        return journal_dir() / f"{hashlib.sha256(identity).hexdigest()[:32]}.json"

    @property
    def path(self) -> Path:
        return self.path_for(self.source, self.store, self.bucket, self.key)

    @classmethod
    def load(cls, path: Path) -> UploadJournal | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def matches_source(self, stat: os.stat_result, part_size: int, algorithm: str) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.part_size, self.algorithm) == (
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
            stat.st_ino,
            part_size,
            algorithm,
        )

    def record_part(self, number: int, value: str) -> None:
        with self._lock:
            self.parts[str(number)] = value
            self.save()

    def save(self) -> None:
        write_private(self.path, json.dumps(asdict(self)).encode())

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def all_journals() -> list[UploadJournal]:
    folder = journal_dir()
    if not folder.is_dir():
        return []
    journals = (UploadJournal.load(p) for p in sorted(folder.glob("*.json")))
    return [j for j in journals if j is not None]


#: a download journal records its complete parts as one number plus those above it, and its parts in flight:
#: a few KiB for any size; anything larger was not written by us
_DOWNLOAD_JOURNAL_MAX_BYTES = 128 * 1024
#: more parts than any object has (5 TiB in 8 MiB ranges is 655,360)
_MAX_DOWNLOAD_PARTS = 1 << 20
#: the download journal's format: 2 records the written prefix of parts in flight and the tail's range size.
#: A journal without it (jobsub before issue 22's fifth pass) or with another is not trusted: start again.
DOWNLOAD_JOURNAL_VERSION = 2


@dataclass
class DownloadJournal:
    """The download resume journal, beside the partial file in DEST (``NAME.jobsub-part.json``).

    It says which object (key, ETag, size) the partial file holds, how it is cut into ranges (``part_size``
    for the bulk, ``tail_part`` for the last wave: transfer/planning.py's plan_download_ranges), which parts
    are complete (``done``) and how many bytes from the start of each part in flight were written
    (``written``, saved every few MiB): a rerun after kill -9 fetches only what is not recorded. It sits in a
    folder other tools write to, so ``load`` trusts nothing: a file that is too large, not JSON, of another
    format version, or has fields of the wrong type is no journal (the download starts over), and a journal
    for another object or layout never resumes (``same_object``).
    """

    key: str
    etag: str
    size: int
    part_size: int
    done: list[int] = field(default_factory=list)  # complete parts above done_through
    tail_part: int = 0
    written: dict[int, int] = field(default_factory=dict)
    version: int = DOWNLOAD_JOURNAL_VERSION
    layout: str = ""  # layout_of(ranges): a rerun at another -j or --part-size cuts other ranges
    done_through: int = 0  # parts 1..done_through are complete (parts are handed out in order)

    @staticmethod
    def layout_of(ranges: list[tuple[int, int, int]]) -> str:
        """A fingerprint of every range's place and length: two layouts that share their bulk and tail sizes
        (1 GiB at -j 4 and -j 8) still differ in where the tail starts, and must never resume each other."""
        digest = hashlib.sha256()
        for number, offset, length in ranges:
            digest.update(f"{number}:{offset}:{length};".encode())
        return digest.hexdigest()[:32]

    def done_parts(self) -> set[int]:
        return set(range(1, self.done_through + 1)) | set(self.done)

    def set_done(self, done: set[int]) -> None:
        """Record `done` compactly: the run of complete parts from part 1 as one number, the few above it
        (parts in flight finish out of order) as a list, so a save stays small for any number of parts."""
        through = self.done_through
        while through + 1 in done:
            through += 1
        self.done_through = through
        self.done = sorted(n for n in done if n > through) if len(done) > through else []

    @staticmethod
    def path_for(partial: Path) -> Path:
        return partial.with_name(partial.name + ".json")

    @classmethod
    def load(cls, path: Path) -> DownloadJournal | None:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(_DOWNLOAD_JOURNAL_MAX_BYTES + 1)
            if len(raw) > _DOWNLOAD_JOURNAL_MAX_BYTES:
                return None
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != DOWNLOAD_JOURNAL_VERSION:
                return None  # an older jobsub's journal (or not ours): start again, never mix two formats
            written_raw = data["written"]
            if not isinstance(written_raw, dict) or not all(
                isinstance(k, str) and k.isdigit() and len(k) < 8 for k in written_raw
            ):
                return None
            journal = cls(
                key=data["key"],
                etag=data["etag"],
                size=data["size"],
                part_size=data["part_size"],
                done=data["done"],
                tail_part=data["tail_part"],
                written={int(k): v for k, v in written_raw.items()},
                layout=data["layout"],
                done_through=data["done_through"],
            )
        except (OSError, ValueError, TypeError, KeyError):
            return None
        types_ok = (
            isinstance(journal.key, str)
            and isinstance(journal.etag, str)
            and type(journal.size) is int
            and type(journal.part_size) is int
            and type(journal.tail_part) is int
            and isinstance(journal.layout, str)
            and type(journal.done_through) is int
            and 0 <= journal.done_through <= _MAX_DOWNLOAD_PARTS
            and len(journal.done) <= _MAX_DOWNLOAD_PARTS
            and isinstance(journal.done, list)
            and all(type(n) is int and n >= 1 for n in journal.done)
            and all(n >= 1 and type(v) is int and v >= 0 for n, v in journal.written.items())
        )
        return journal if types_ok else None

    def same_object(self, other: DownloadJournal) -> bool:
        """The same object (key, ETag, size) cut into the same ranges."""
        mine = (self.key, self.etag, self.size, self.part_size, self.tail_part, self.layout)
        return bool(self.layout) and mine == (
            other.key,
            other.etag,
            other.size,
            other.part_size,
            other.tail_part,
            other.layout,
        )

    def save(self, path: Path) -> None:
        """Replace the journal atomically (a kill -9 leaves the old one or the new one, never half)."""
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({**self.__dict__, "written": {str(k): v for k, v in self.written.items()}}))
        os.replace(tmp, path)
