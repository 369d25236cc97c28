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
