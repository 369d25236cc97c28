"""``python -m jobsub.runtime.pyscript SCRIPT ARGS``: run a script with ARGS split like a shell would, but
without globbing, variable expansion or command substitution (shlex.split), then exec it.

The python-script template uses it, so `--set "params.args=--name 'two words' *.txt"` reaches the script as
three arguments and `$(...)` or `*` in them stay literal text.
"""

from __future__ import annotations

import os
import shlex
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m jobsub.runtime.pyscript SCRIPT ARGS", file=sys.stderr)
        return 2
    script, args = argv
    try:
        words = shlex.split(args)
    except ValueError as exc:
        print(f"jobsub: cannot split params.args {args!r}: {exc} (close the quote)", file=sys.stderr)
        return 2
    os.execv(sys.executable, [sys.executable, script, *words])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
