#!/usr/bin/env bash
# Installs whatever is missing for HierGeo on Debian 12, idempotently:
#   1. QGIS from Debian (qgis, python3-qgis) when `import qgis` fails,
#   2. a virtualenv at .venv that sees the system's QGIS bindings,
#   3. the pinned requirements (dev requirements too with --dev).
# Every step is skipped when already done, so `make demo` / `make test` stay fast after the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1 || [ ! -x /usr/bin/qgis_process.bin ] \
   || ! /usr/bin/python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  echo "[setup] installing QGIS from Debian (about 2 minutes)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qgis python3-qgis python3-venv make >/dev/null
fi

# The desktop tests (tests/desktop) run the QGIS desktop under a virtual X server.
if [ "$DEV" = 1 ] && ! command -v xvfb-run >/dev/null 2>&1; then
  echo "[setup] installing xvfb (the desktop tests' X server)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq xvfb xauth >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv (with system site-packages, so QGIS is importable)..."
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

req=requirements.txt
[ "$DEV" = 1 ] && req=requirements-dev.txt
stamp=".venv/.installed-$(basename "$req" .txt)-$(cat requirements*.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing pinned Python requirements from $req (a few minutes the first time)..."
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
