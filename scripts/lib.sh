# Shared helpers for the scripts in this folder. Source it; don't run it.
# shellcheck shell=bash

# Print the path of a Python interpreter >= 3.11: $PYTHON if set, else
# python3.11, else python3. Returns 1 if none qualifies.
find_python() {
    local cand path
    for cand in "${PYTHON:-}" python3.11 python3; do
        [ -n "$cand" ] || continue
        path=$(command -v "$cand" 2>/dev/null) || continue
        if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$path"
            return 0
        fi
    done
    return 1
}

die() {
    echo "error: $*" >&2
    exit 1
}
