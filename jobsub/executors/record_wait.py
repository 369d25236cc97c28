"""How long a runner started before its record waits for it: read by the runtime (runner.py) and by the
submit that decides whether a runner it started early may still get its record in time (jobs/service.py).
A module of its own (in executors, below both) so the client's service reads it without importing the runtime."""

from __future__ import annotations

import os

#: The docker, slurm and local executors start the runner beside the submit's record writes (docker even
#: before the code upload: the container, batch job or process starts while the record is written:
#: docs/performance.md, "Start latency"), so a runner may come up before its record: it waits this long
#: for it, then fails without running anything.
RECORD_WAIT_SECONDS = 60.0


def record_wait_seconds() -> float:
    """JOBSUB_RECORD_WAIT_SECONDS (1 to 3600) or 60; a value that is not such a number is ignored (the
    default), since a runner that fails on a knob before it has a record has nowhere to say why."""
    raw = os.environ.get("JOBSUB_RECORD_WAIT_SECONDS", "").strip()
    try:
        value = float(raw)
    except ValueError:
        return RECORD_WAIT_SECONDS
    return value if 1 <= value <= 3600 else RECORD_WAIT_SECONDS
