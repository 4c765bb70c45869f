#!/usr/bin/env bash
# Run by `npm test` (npm's pretest hook): the container tests start a private Docker engine (Debian's docker.io)
# and make their base image with debootstrap. Installs both when missing and running as root; otherwise says
# what is missing, and the container tests skip with the same reason. CONTAINER_TESTS=0 skips them on purpose.
set -euo pipefail
if [ "${CONTAINER_TESTS:-}" = "0" ]; then exit 0; fi
if [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] && [ -x /usr/sbin/debootstrap ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "container tests will skip: docker.io and debootstrap are missing and only root can install them" >&2
  exit 0
fi
echo "installing Debian's docker.io and debootstrap for the container tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q docker.io debootstrap
