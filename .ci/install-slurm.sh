#!/usr/bin/env bash
# Slurm 22.05 + munge for the slurm executor's tests (tests/executors/harness_slurm.py starts the daemons).
# Idempotent: does nothing when sbatch, slurmctld, slurmd and munged are already there. Starts nothing.
set -euo pipefail
if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v munged >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq slurm-wlm munge >/dev/null
