#!/usr/bin/env bash
# Runs every test of the workspace (the tenantry package and the bench crate): unit, property,
# integration (the real binary over real HTTP, a real nats-server on a free loopback port, kill -9
# crash trials).
# Installs the system packages the tests need when they are missing (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "installing nats-server (Debian package) for the NATS tests"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi

cargo test --locked --workspace --all-targets --no-fail-fast "$@"
