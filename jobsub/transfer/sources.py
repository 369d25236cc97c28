"""Which files of a local folder an upload sends, and what it skips (said, never silent).

A folder handed to `jobsub upload` or to `submit --input` is what the user means to send, not whatever its
links point at: a symlink to /etc/passwd (or ~/.aws/credentials) dropped into a dataset folder must not
put that file into a bucket. So, as the code packer does (jobs/packaging.py refuses links that leave the
code folder):
- a file symlink whose target is a regular file inside the folder is sent (its bytes, under the link's
  name): Hugging Face caches and deduplicated datasets are made of such links;
- a file symlink that leaves the folder, a broken one, a folder symlink (never entered: no loops, no
  second copy) and anything that is not a regular file (a FIFO would block the upload forever, a socket
  or device has no bytes to send) is skipped, and each one is named in a note.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def folder_files(folder: Path) -> tuple[list[Path], list[str]]:
    """(the files to send, sorted; one note per skipped entry: "PATH: why"). `folder` is resolved first."""
    root = folder.resolve()
    files: list[Path] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames):
            path = here / name
            if path.is_symlink():  # os.walk lists a folder link among the folders and never enters it
                skipped.append(f"{path}: a symlink to a folder ({_target(path)}), not followed")
        for name in filenames:
            path = here / name
            reason = _skip_reason(root, path)
            if reason:
                skipped.append(f"{path}: {reason}")
            else:
                files.append(path)
    return sorted(files), sorted(skipped)


def _target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _skip_reason(root: Path, path: Path) -> str | None:
    """Why `path` (an entry of a folder under `root`) is not sent, or None when it is a file to send."""
    try:
        info = path.lstat()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return f"a broken symlink (to {_target(path)}), not followed"
        if not target.is_relative_to(root):
            return f"a symlink to {target}, outside the folder, not followed"
        if not target.is_file():
            return f"a symlink to {target}, not a regular file"
        return None
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    return None
