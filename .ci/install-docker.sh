#!/usr/bin/env bash
# Docker Engine (dockerd, started by the test fixture with its own data/exec roots: there is no systemd) and
# mmdebstrap (the tests' base image: there is no Docker Hub). Idempotent.
set -euo pipefail
if command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null; then exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap
