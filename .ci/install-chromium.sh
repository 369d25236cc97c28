#!/usr/bin/env bash
# Chromium and its driver for the web view's browser tests (tests/test_web_browser.py), from Debian's packages.
# Idempotent and quick when both are there already; a browser download from the internet does not work here.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
