"""Code packaging: a folder becomes a reproducible tar.gz named by its SHA-256, uploaded once.

The same files always give the same archive (sorted entries, zeroed times and owners), so an unchanged
folder costs one HEAD request and no upload.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import logging
import os
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)

ALWAYS_EXCLUDED = {
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    ".env",
    "env",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    ".ipynb_checkpoints",
    ".DS_Store",
}
WARN_BYTES = 100 * 1000 * 1000


def _ignore_patterns(folder: Path) -> list[str]:
    patterns: list[str] = []
    for name in (".gitignore", ".jobsubignore"):
        path = folder / name
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "!")):
                    patterns.append(line.rstrip("/").lstrip("/"))
    return patterns


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    if any(p in ALWAYS_EXCLUDED for p in parts) or parts[-1].endswith(".pyc"):
        return True
    return any(fnmatch.fnmatch(rel, p) or any(fnmatch.fnmatch(part, p) for part in parts) for p in patterns)


def _check_link(folder: Path, rel: str, path: Path) -> None:
    """A link that points outside the code folder would fail at run time (unpacking refuses it): say so now."""
    from jobsub.errors import SpecError

    target = os.readlink(path)
    resolved = (path.parent / target).resolve()
    if os.path.isabs(target) or not resolved.is_relative_to(folder):
        raise SpecError(
            f"code folder {folder}: {rel} is a symbolic link to {target}, outside the code folder; "
            f"copy what it points to into the folder, or list {rel} in .jobsubignore"
        )


def verify_archive(data: bytes, expected: str, where: str) -> None:
    """The archive's SHA-256 must be the one in its name and in the job record; anything else is not our code."""
    from jobsub.errors import IntegrityError

    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(
            f"code archive {where} does not match its SHA-256 (expected {expected[:12]}, got {actual[:12]}): "
            f"it was changed in the store; submit the job again to upload the code again"
        )


def pack_code(folder: Path) -> tuple[bytes, str, int]:
    """(archive bytes, its hex SHA-256, number of files). Symlinks are stored as links, never followed."""
    folder = folder.resolve()
    if not folder.is_dir():
        from jobsub.errors import SpecError

        raise SpecError(f"code folder {folder} does not exist")
    patterns = _ignore_patterns(folder)
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = os.path.relpath(dirpath, folder)
        dirnames[:] = sorted(d for d in dirnames if not _ignored(os.path.normpath(os.path.join(rel_dir, d)), patterns))
        linked_dirs = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]  # os.walk lists, never enters them
        for name in sorted(filenames + linked_dirs):
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            if not _ignored(rel, patterns):
                path = Path(dirpath) / name
                if path.is_symlink():
                    _check_link(folder, rel, path)
                files.append((rel, path))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for rel, path in files:
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    data = buffer.getvalue()
    if len(data) > WARN_BYTES:
        log.warning("code archive of %s is %.0f MB: add large files to .jobsubignore", folder, len(data) / 1e6)
    return data, hashlib.sha256(data).hexdigest(), len(files)


def unpack_code(data: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        _extract_data(tar, dest)


def _extract_data(tar: tarfile.TarFile, dest: Path) -> None:
    """extractall with the "data" filter: strips leading '/', refuses '..' and links out of dest. Pythons before
    3.11.4 / 3.10.12 (Debian bookworm's 3.11.2, the base of minimal job images) lack the filter: the same
    refusals are made here by hand, and special files and set-id bits are refused or dropped too."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    members = tar.getmembers()
    for member in members:
        member.name = member.name.lstrip("/")  # as the filter does: an absolute name lands inside dest
        target = (root / member.name).resolve()
        if target != root and root not in target.parents:
            raise tarfile.TarError(f"code archive member {member.name!r} points outside the code folder")
        if member.issym() or member.islnk():
            link = (target.parent / member.linkname) if member.issym() else (root / member.linkname)
            if member.linkname.startswith("/") or root not in link.resolve().parents:
                raise tarfile.TarError(f"code archive link {member.name!r} points outside the code folder")
        elif not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"code archive member {member.name!r} is not a file or folder")
        member.mode &= 0o755
        member.uid = member.gid = 0
        member.uname = member.gname = ""
    tar.extractall(dest, members=members)
