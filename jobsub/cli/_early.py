"""Imported first by jobsub.cli: a `jobsub upload` process starts hashing its source files now, on one thread,
beside the CLI's own imports (~0.3 s before click can parse the command line). jobsub.prehash says what is
hashed and when a value is used; this module only hands it the command line, and imports nothing heavy."""

from __future__ import annotations

import sys

from jobsub import prehash

prehash.start_from_argv(sys.argv)
