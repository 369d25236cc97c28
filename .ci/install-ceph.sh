#!/usr/bin/env bash
# Ceph (one monitor, one in-memory OSD, radosgw) for the S3 tests that run against a production server
# (tests/ceph.py starts it). Idempotent: does nothing when the binaries are already there.
set -euo pipefail
need=()
for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool ceph openssl; do
  command -v "$bin" >/dev/null || need+=("$bin")
done
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ceph-mon ceph-osd ceph-mgr radosgw ceph-common openssl >/dev/null
