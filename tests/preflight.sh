#!/usr/bin/env bash
# Run by `npm test` (npm's pretest hook): what the suites need beside node_modules, checked before they start, so
# that a missing part is named with the line that installs it instead of failing a test obscurely.
# - RabbitMQ on 127.0.0.1:5672 (every suite);
# - PostgreSQL on 127.0.0.1:5432 (the store's tests on their second backend);
# - Debian's Chromium at /usr/bin/chromium (the dashboard's browser tests): installed here when missing and run
#   as root, as on the CI machine.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
missing=0

if ! answers 5672; then
  echo "preflight: RabbitMQ is not answering on 127.0.0.1:5672. Start it with 'rabbitmq-server -detached'" >&2
  echo "           (install it first, as root: apt-get install -y rabbitmq-server)." >&2
  missing=1
fi

if ! answers 5432; then
  echo "preflight: PostgreSQL is not answering on 127.0.0.1:5432: the store's tests run on it too (a database each," >&2
  echo "           user postgres, trust auth). Start it with" >&2
  echo "           'pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start'" >&2
  echo "           (install it first, as root: apt-get install -y postgresql; bash .ci/run does both)." >&2
  missing=1
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "preflight: installing Debian's chromium for the dashboard's browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium
    /usr/bin/chromium --version 2>/dev/null
  else
    echo "preflight: /usr/bin/chromium is missing: the dashboard's browser tests drive Debian's Chromium." >&2
    echo "           Install it as root (sudo apt-get install -y chromium), then run npm test again." >&2
    missing=1
  fi
fi

exit "$missing"
