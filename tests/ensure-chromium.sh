#!/usr/bin/env bash
# Run by `npm test` (npm's pretest hook): the dashboard's browser tests drive Debian's Chromium, which a
# fresh machine of this kind does not have. Installs it when it is missing (needs root and Debian's packages).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium
/usr/bin/chromium --version 2>/dev/null
