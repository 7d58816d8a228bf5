#!/usr/bin/env bash
# Runs the whole test suite on newer QGIS releases than the host's, each inside a Debian system built with
# debootstrap from Debian's archive (QGIS and Python from Debian, the pinned requirements from PyPI):
#   trixie  Debian 13: QGIS 3.40 LTR, Python 3.13
#   sid     Debian unstable: QGIS 3.44 (or newer), Python 3.14
# Usage: scripts/test_matrix.sh [--build-only] [SUITE...]     (default: trixie sid; `make test-matrix`)
#   --build-only  build (or update) the systems and venvs, run no tests
#   PYTEST_ARGS   extra pytest arguments (default: -q -p no:cacheprovider)
#   MATRIX_CACHE  where the built systems stay between runs (default /var/cache/hiergeo-matrix/<suite>);
#                 a system is rebuilt only when missing, and its venv only when the requirements change
#   DEBIAN_MIRROR (default http://deb.debian.org/debian)
#   HIERGEO_SHARED, when set, is made visible at the same path inside (read-only)
# Needs root (debootstrap, chroot, mounts). Every mount lives in a private mount namespace (unshare -m), so it
# vanishes with the run, whatever happens, and never outlives it under the cached tree.
# Exit status: the first failing suite's pytest status (0 when all pass).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MATRIX_CACHE:-/var/cache/hiergeo-matrix}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTEST_ARGS="${PYTEST_ARGS:--q -p no:cacheprovider}"
BUILD_ONLY=0
if [ "${1:-}" = "--build-only" ]; then
  BUILD_ONLY=1
  shift
fi
SUITES=("$@")
[ "${#SUITES[@]}" -eq 0 ] && SUITES=(trixie sid)
VENV=/opt/hiergeo-venv   # inside the chroot
SRC=/hiergeo/src         # inside the chroot: a fresh copy of the working tree for every run

log() { printf '[test-matrix %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "test_matrix.sh: run as root (debootstrap and chroot need it)" >&2; exit 2; }

ensure_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v unshare >/dev/null || missing+=(util-linux)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Absolute folders the host's pip configuration points at (local indexes, find-links): mounted read-only at the
# same paths inside so that pip there sees the same packages as on the host.
pip_local_dirs() {
  {
    cat /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" 2>/dev/null || true
    env | grep '^PIP_' || true
  } | grep -oE '(file://)?/[A-Za-z0-9._/+-]+' | sed 's#^file://##' | sort -u | while read -r p; do
    [ -d "$p" ] && case "$p" in /etc/*|/usr/*|/proc/*|/sys/*|/dev/*) ;; *) echo "$p" ;; esac
  done
  return 0
}

# Runs "$@" (a bash script and its arguments) in a private mount namespace with the chroot's /proc, /dev, /sys,
# DNS, CA certificates, pip configuration and local pip folders in place.
in_chroot() {
  local root="$1"
  shift
  local dirs
  dirs="$(pip_local_dirs | tr '\n' ' ')"
  unshare --mount --propagation private bash -s "$root" "$CACHE/pip-cache" "$dirs" "${HIERGEO_SHARED:-}" "$@" <<'EOF'
set -euo pipefail
root="$1"; pipcache="$2"; dirs="$3"; shared="$4"; shift 4
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mkdir -p "$pipcache" "$root/root/.cache/pip"
mount --bind "$pipcache" "$root/root/.cache/pip"
for d in $dirs; do
  mkdir -p "$root$d" && mount --bind -o ro "$d" "$root$d" 2>/dev/null || mount --bind "$d" "$root$d"
done
if [ -n "$shared" ] && [ -d "$shared" ]; then
  mkdir -p "$root$shared" && mount --bind "$shared" "$root$shared"
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 ${shared:+HIERGEO_SHARED=$shared} "$@"
EOF
}

# The Debian system of one suite with QGIS, its Python and CA certificates; built once, then reused.
build_system() {
  local suite="$1" root="$CACHE/$1"
  if [ -f "$root/.hiergeo-system" ]; then
    # Systems built before the desktop tests (tests/desktop) lack the X server they start QGIS under.
    if [ ! -x "$root/usr/bin/xvfb-run" ]; then
      log "$suite: apt-get install xvfb (the desktop tests' X server)"
      in_chroot "$root" bash -c 'apt-get update -qq && apt-get install -y -qq xvfb xauth >/dev/null' \
        >"$CACHE/$suite.xvfb.log" 2>&1 || { tail -30 "$CACHE/$suite.xvfb.log" >&2; return 1; }
    fi
    return 0
  fi
  local part="$CACHE/$suite.partial"
  rm -rf --one-file-system "$part"
  mkdir -p "$part"
  log "$suite: debootstrap from $MIRROR"
  # unshare: debootstrap's own mounts (proc, sys) vanish with it.
  unshare --mount --propagation private debootstrap --variant=minbase --include=ca-certificates \
    "$suite" "$part" "$MIRROR" >"$CACHE/$suite.debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/$suite.debootstrap.log" >&2; return 1; }
  # unstable's Release file can be older than its Valid-Until when mirrors lag; no services in a chroot.
  printf 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n' \
    >"$part/etc/apt/apt.conf.d/99hiergeo"
  printf '#!/bin/sh\nexit 101\n' >"$part/usr/sbin/policy-rc.d"
  chmod +x "$part/usr/sbin/policy-rc.d"
  mkdir -p "$part/usr/local/share/ca-certificates" "$part/etc/xdg"
  cp -a /usr/local/share/ca-certificates/. "$part/usr/local/share/ca-certificates/" 2>/dev/null || true
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$part/etc/pip.conf"
  [ -d /etc/xdg/pip ] && cp -a /etc/xdg/pip "$part/etc/xdg/"
  log "$suite: apt-get install qgis python3-qgis (several minutes)"
  in_chroot "$part" bash -c '
    set -e
    apt-get update -qq
    apt-get install -y -qq qgis python3-qgis python3-venv git make xauth xvfb >/dev/null
    update-ca-certificates >/dev/null 2>&1 || true
  ' >"$CACHE/$suite.apt.log" 2>&1 || { tail -30 "$CACHE/$suite.apt.log" >&2; return 1; }
  touch "$part/.hiergeo-system"
  rm -rf --one-file-system "$root"
  mv "$part" "$root"
}

# The venv with the pinned requirements, rebuilt when they change.
build_venv() {
  local suite="$1" root="$CACHE/$1"
  local stamp
  stamp=".hiergeo-venv-$(cat "$REPO"/requirements*.txt | sha1sum | cut -c1-12)"
  if [ -f "$root/$stamp" ]; then
    return 0
  fi
  log "$suite: venv with the pinned requirements (downloads torch for this Python the first time)"
  rm -f "$root"/.hiergeo-venv-*
  mkdir -p "$root/hiergeo/req"
  cp "$REPO"/requirements*.txt "$root/hiergeo/req/"
  # An existing venv is updated in place: pip keeps what still matches the pins.
  in_chroot "$root" bash -c "
    set -e
    [ -x $VENV/bin/python ] || /usr/bin/python3 -m venv --system-site-packages $VENV
    $VENV/bin/python -m pip install -q -r /hiergeo/req/requirements-dev.txt
  " >"$CACHE/$suite.pip.log" 2>&1 || { tail -30 "$CACHE/$suite.pip.log" >&2; return 1; }
  touch "$root/$stamp"
}

# A fresh copy of the working tree (tracked and untracked, not ignored files), with the chroot's venv as .venv.
copy_tree() {
  local root="$CACHE/$1"
  rm -rf --one-file-system "$root$SRC" "$root"/tmp/* "$root"/tmp/.[!.]* 2>/dev/null || true
  mkdir -p "$root$SRC"
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - 2>/dev/null) \
    | tar -xf - -C "$root$SRC"
  ln -s "$VENV" "$root$SRC/.venv"
}

run_suite() {
  local suite="$1" root="$CACHE/$1" rc=0
  copy_tree "$suite"
  local qgis_version
  qgis_version="$(in_chroot "$root" $VENV/bin/python -c 'from qgis.core import Qgis; print(Qgis.version())' \
    2>/dev/null | tail -1)"
  log "$suite: QGIS $qgis_version, $(in_chroot "$root" $VENV/bin/python -V 2>&1): running the suite"
  # shellcheck disable=SC2086
  in_chroot "$root" bash -c "cd $SRC && exec nice $VENV/bin/python -m pytest $PYTEST_ARGS" || rc=$?
  log "$suite: pytest exit status $rc"
  return "$rc"
}

ensure_host_tools
mkdir -p "$CACHE"
status=0
for suite in "${SUITES[@]}"; do
  t0=$(date +%s)
  build_system "$suite"
  t1=$(date +%s)
  build_venv "$suite"
  t2=$(date +%s)
  rc=0
  [ "$BUILD_ONLY" = 1 ] || run_suite "$suite" || rc=$?
  t3=$(date +%s)
  log "$suite: system $((t1 - t0)) s, venv $((t2 - t1)) s, suite $((t3 - t2)) s"
  [ "$status" -eq 0 ] && status=$rc
done
exit "$status"
