#!/usr/bin/env bash
# Install the system packages the project needs, in one apt-ensure call (so
# `apt-get update` runs at most once, and only when something is missing).
#
#   scripts/sysdeps.sh [EXTRA_DEBIAN_PKG...]
#
# Always checked: a Python >= 3.11 that can make a venv (Debian splits
# ensurepip into python3.X-venv) and npm. Extra packages come from the
# Makefile (`make test` passes chromium, openssh-*, xvfb, tmux, procps).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

pkgs=("$@")

py=$(find_python) || die "Python >= 3.11 not found (tried \$PYTHON, python3.11, python3). Install python3.11, then rerun."

# A venv needs ensurepip, unless .venv already works.
if ! [ -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    if ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        case "$py" in
            /usr/bin/*) pkgs+=("python$ver-venv") ;;
            *) die "$py cannot make a venv (no ensurepip) and is not Debian's Python; fix that Python or set PYTHON=/path/to/python3.11" ;;
        esac
    fi
fi

if ! command -v npm >/dev/null 2>&1; then
    pkgs+=(nodejs npm)
fi

exec bash scripts/apt-ensure.sh "${pkgs[@]}"
