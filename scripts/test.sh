#!/usr/bin/env bash
# Lint, type-check and run the whole test suite against the INSTALLED package.
# `make test` runs the setup (system packages, venv, npm ci, pip install) first;
# this script assumes it has been done.
#
#   scripts/test.sh [PYTEST_ARGS...]
#
# Exit status: pytest's (5, "no tests collected", is a failure like any other
# non-zero status); 1 if pytest passed but ruff or mypy failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd -P)
VENV=$ROOT/.venv

[ -x "$VENV/bin/pytest" ] || { echo "error: $VENV/bin/pytest missing; run 'make test'" >&2; exit 1; }

# Tests and the processes they start find tether-broker / tether-client here.
export PATH="$VENV/bin:$PATH"
# Never put the current directory (the source tree) on sys.path, not even for
# `python -m ...` or `python -c ...` in subprocesses: the installed package is
# what is tested.
export PYTHONSAFEPATH=1
export PYTHONDONTWRITEBYTECODE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

origin=$("$VENV/bin/python" -c 'import tether; print(tether.__file__)') || {
    echo "error: tether is not importable from $VENV; run 'make test'" >&2
    exit 1
}
case "$origin" in
    "$VENV"/lib/*/site-packages/*) echo "tether under test: $origin" ;;
    *) echo "error: tether resolves to $origin, not to $VENV's site-packages" >&2; exit 1 ;;
esac

failed=()

lint_paths=()
for d in tether tests bench; do
    [ -d "$d" ] && lint_paths+=("$d")
done
echo "==> ruff check ${lint_paths[*]}"
if ! "$VENV/bin/ruff" check "${lint_paths[@]}"; then
    failed+=(ruff)
fi

echo "==> mypy"
if ! "$VENV/bin/mypy"; then
    failed+=(mypy)
fi

# The sans-I/O protocol and the session core hold the strictest bar.
echo "==> mypy --strict tether/protocol tether/broker/core"
if ! "$VENV/bin/mypy" --strict tether/protocol tether/broker/core; then
    failed+=("mypy --strict")
fi

if [ "${#failed[@]}" -ne 0 ]; then
    echo "==> ${failed[*]} failed (see above); running the tests anyway" >&2
fi

# A safety net below CI's 90-minute limit, so a hung test still ends with
# pytest's own summary (SIGINT) rather than a killed job.
timeout_after=${TETHER_TEST_TIMEOUT:-80m}

echo "==> pytest (timeout $timeout_after)"
# .venv/bin/pytest, not `python -m pytest`: the latter puts the cwd (the source
# tree) first on sys.path. The plugin checks that tether comes from site-packages.
PYTHONPATH="$ROOT/scripts/pytest-plugins${PYTHONPATH:+:$PYTHONPATH}" \
    timeout --foreground --signal=INT --kill-after=60 "$timeout_after" \
    "$VENV/bin/pytest" -p tether_installed_check -p no:cacheprovider \
    -q -ra --durations=10 "$@"
rc=$?

case $rc in
    0) ;;
    5) echo "error: pytest collected no tests (exit 5); that counts as a failure" >&2 ;;
    124) echo "error: pytest ran longer than $timeout_after and was interrupted" >&2 ;;
esac

if [ "$rc" -eq 0 ] && [ "${#failed[@]}" -ne 0 ]; then
    echo "error: tests passed but ${failed[*]} failed" >&2
    rc=1
fi
exit "$rc"
