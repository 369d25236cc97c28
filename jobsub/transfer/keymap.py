"""How the keys under a prefix become local paths: files, folders, refused keys and conflicts.

One classification for `jobsub download` and for a job's input staging (both plan through
`Downloader.plan`), because object stores hold what other tools made:
- an S3/OBS console's "Create folder" writes a zero-byte object `prefix/` (and `prefix/sub/`): a folder,
  never a file and never "unsafe", also when it is the marker of the folder being downloaded itself;
- keys that cannot be local paths ('..', '.', a leading '/', a backslash, an empty segment, or a key ending
  in '/' that holds bytes) are refused, one by one;
- keys `a` and `a/b` under one prefix (S3 allows both; a filesystem cannot) are a conflict, found before
  any byte moves, so a download fails with one line and leaves no part file behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jobsub.errors import KeyConflictError
from jobsub.uri import key_problem

KeyKind = Literal["file", "folder", "unsafe"]


@dataclass(frozen=True)
class KeyClass:
    """What one key (relative to the prefix being downloaded) is locally."""

    kind: KeyKind
    target: Path | None  # the file or folder it maps to inside DEST; None when refused
    problem: str | None = None  # why it was refused, completing "it ..."


def safe_target(dest: Path, relative_key: str) -> Path | None:
    """The file a relative key maps to inside ``dest``, or None when it would escape or is malformed."""
    if not relative_key or key_problem(relative_key):
        return None
    target = (dest / relative_key).resolve()
    root = dest.resolve()
    return target if target != root and target.is_relative_to(root) else None


def classify_key(dest: Path, relative: str, size: int) -> KeyClass:
    """A key below the prefix (`relative`, '' for the prefix's own marker) and its size -> file, folder or unsafe."""
    if relative == "" or relative.endswith("/"):
        if size:
            return KeyClass("unsafe", None, f"ends with '/' but holds {size} bytes, so it is no file name")
        if relative == "":
            return KeyClass("folder", dest.resolve())
        problem = key_problem(relative)
        folder = safe_target(dest, relative.rstrip("/")) if not problem else None
        if folder is None:
            return KeyClass("unsafe", None, problem or "would land outside the destination")
        return KeyClass("folder", folder)
    problem = key_problem(relative)
    target = safe_target(dest, relative) if not problem else None
    if target is None:
        return KeyClass("unsafe", None, problem or "would land outside the destination")
    return KeyClass("file", target)


def check_conflicts(dest: Path, files: dict[Path, str], folders: dict[Path, str], where: str) -> None:
    """Refuse (KeyConflictError, one line) keys that cannot all exist locally, before anything is written.

    `files` and `folders` map each local target to its key. A target that must be a file and a folder at
    once (keys `a` and `a/b`, or `a` and the marker `a/`) conflicts; so does a target whose place on the local
    disk is taken by the other kind (a folder where a file goes, a file where a folder must be).
    """
    root = dest.resolve()
    conflicts: list[str] = []
    checked: set[Path] = set()

    def parents_of(target: Path) -> list[Path]:
        out = []
        for parent in target.parents:
            if parent == root or not parent.is_relative_to(root):
                break
            out.append(parent)
        return out

    for target, key in [*files.items(), *folders.items()]:
        if target in files and target in folders and key == files[target]:  # once, from the file's side
            conflicts.append(f"keys {key!r} and {folders[target]!r} make {target.name!r} both a file and a folder")
        for parent in parents_of(target):
            if parent in files:
                conflicts.append(f"keys {files[parent]!r} and {key!r} make {parent.name!r} both a file and a folder")
                break
            if parent in checked:
                continue
            checked.add(parent)
            if parent.exists() and not parent.is_dir():
                conflicts.append(f"key {key!r} needs a folder where {parent} is a file")
                break
        if target in files and target not in folders and target.is_dir():
            conflicts.append(f"key {key!r} would replace the folder {target}")
        if target in folders and target not in files and target.exists() and not target.is_dir():
            conflicts.append(f"folder marker {key!r} needs a folder where {target} is a file")
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise KeyConflictError(
            f"cannot download {where}: {conflicts[0]}{more}; rename or remove one of them "
            "(a folder cannot hold a file and a folder of one name); nothing was downloaded"
        )
