"""The upload resume journal: what was planned for one (source file, destination), replaced atomically.

The server stays the source of truth (ListParts); the journal only says which upload id belongs to which
source, with which part size, and the MD5 of each part we sent. It may be missing or stale, and the upload
engine copes with both.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jobsub.config import state_dir


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
    created: float = field(default_factory=time.time)
    parts: dict[str, str] = field(default_factory=dict)  # part number -> hex MD5 (== ETag)

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

    def matches_source(self, size: int, mtime_ns: int, part_size: int) -> bool:
        return (self.size, self.mtime_ns, self.part_size) == (size, mtime_ns, part_size)

    def record_part(self, number: int, md5_hex: str) -> None:
        with self._lock:
            self.parts[str(number)] = md5_hex
            self.save()

    def save(self) -> None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items()}
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def all_journals() -> list[UploadJournal]:
    folder = journal_dir()
    if not folder.is_dir():
        return []
    journals = (UploadJournal.load(p) for p in sorted(folder.glob("*.json")))
    return [j for j in journals if j is not None]
