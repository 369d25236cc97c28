"""This jobsub, zipped for a Ray cluster that does not have it: the ``py_modules`` package of every Ray job.

A stock Ray cluster has Python and Ray, not jobsub. Rather than asking every cluster admin to install
jobsub (and keep its version in step with each user's client), the executor uploads the client's own
jobsub package through the dashboard's package API and names it in ``runtime_env.py_modules``; Ray
unpacks it on the node that runs the job and puts it on the runner's PYTHONPATH. So the runner is always
the same code as the client that wrote the job record.

Only the ``jobsub`` folder is shipped: job templates (installed as jobsub.job_templates from the top-level
job_templates/ folder) are read at submit, never by the runner, which reads the spec from the job record.

The zip is reproducible (sorted names, fixed timestamps, no bytecode) and named by a hash of its
content, so a second submit from the same jobsub uploads nothing, and two versions never collide.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from pathlib import Path

#: not needed by the runner: bytecode, and the demo's sample data (the demo ships what it needs as job code)
_SKIP_DIRS = {"__pycache__", "demo_data"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
#: Ray's own naming for uploaded packages (its garbage collector and tools recognise the prefix)
_PREFIX = "_ray_pkg_jobsub_"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not _SKIP_DIRS.intersection(path.relative_to(root).parts)
        and path.suffix not in _SKIP_SUFFIXES
    )


@functools.lru_cache(maxsize=1)
def jobsub_package() -> tuple[str, bytes]:
    """(package file name, zip bytes) of the jobsub package this process runs; built once per process."""
    import jobsub

    root = Path(jobsub.__file__).resolve().parent
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in _files(root):
            name = "jobsub/" + path.relative_to(root).as_posix()
            data = path.read_bytes()
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return f"{_PREFIX}{digest.hexdigest()[:32]}.zip", buffer.getvalue()
