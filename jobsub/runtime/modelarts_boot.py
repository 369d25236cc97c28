"""``python -m jobsub.runtime.modelarts_boot JOB_URI``: the command of a ModelArts training job.

It runs inside the job's container (an image with jobsub, e.g. from `jobsub image build`): it makes a work
folder (ModelArts' local SSD, /cache, where there is one) and runs the jobsub runtime in-process, so
ModelArts' stop signal reaches the runtime itself. The storage credentials arrive as a one-time secret
(executors/secret_drop.py): the runtime fetches it before it opens the store and deletes it once it holds the
values, so the ticket in the job definition is worthless from then on. Failures before the runtime starts
are one line on stderr (ModelArts exports it with the job's log) and a non-zero exit, which ModelArts reports
as Failed.
"""

from __future__ import annotations

import os
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m jobsub.runtime.modelarts_boot JOB_URI", file=sys.stderr)
        return 2
    job_id = args[0].rstrip("/").rsplit("/", 1)[-1]
    base = os.environ.get("JOBSUB_WORK_ROOT") or (
        "/cache" if os.access("/cache", os.W_OK) else None  # ModelArts' local SSD in training containers
    )
    work = tempfile.mkdtemp(prefix=f"jobsub-{job_id}-", dir=base)
    from jobsub.runtime.__main__ import main as runtime_main

    return runtime_main([args[0], "--work-dir", work])


if __name__ == "__main__":
    sys.exit(main())
