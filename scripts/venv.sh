#!/usr/bin/env bash
# Make sure .venv exists, works, and runs Python >= 3.11; (re)create it if not.
#
#   scripts/venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

VENV=.venv

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

if venv_ok; then
    echo "venv: $VENV ok ($("$VENV/bin/python" --version))"
    exit 0
fi

py=$(find_python) || die "Python >= 3.11 not found (tried \$PYTHON, python3.11, python3)"
if [ -e "$VENV" ]; then
    echo "venv: $VENV is unusable or too old; recreating it"
    rm -rf "$VENV"
fi
echo "venv: creating $VENV with $py ($("$py" --version))"
if ! "$py" -m venv "$VENV"; then
    rm -rf "$VENV"
    die "'$py -m venv $VENV' failed (on Debian: apt-get install python3.11-venv)"
fi
venv_ok || die "$VENV was created but does not work"
