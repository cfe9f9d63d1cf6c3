#!/usr/bin/env bash
# Install the given Debian packages, but only those that are not installed yet.
#
#   scripts/apt-ensure.sh PKG...
#
# Runs `apt-get update` once (only when something is missing), then
# `apt-get install -y --no-install-recommends` non-interactively. Uses sudo
# only when not root and sudo exists. Does nothing when every package is there.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    exit 0
fi

is_installed() {
    # `dpkg -s` also succeeds for removed-but-not-purged packages, so check the
    # Status line rather than the exit code alone.
    local status
    status=$(dpkg -s "$1" 2>/dev/null | sed -n 's/^Status: //p') || return 1
    [ "$status" = "install ok installed" ]
}

if ! command -v dpkg >/dev/null 2>&1; then
    echo "apt-ensure: dpkg not found; this is not a Debian-like system." >&2
    echo "apt-ensure: install these packages by hand, then rerun: $*" >&2
    exit 1
fi

missing=()
for pkg in "$@"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "apt-ensure: already installed: $*"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "apt-ensure: missing packages: ${missing[*]}" >&2
        echo "apt-ensure: not root and sudo not found; install them as root, then rerun." >&2
        exit 1
    fi
fi

echo "apt-ensure: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"

# Make sure it worked (a typo in a package name would otherwise go unnoticed).
still=()
for pkg in "${missing[@]}"; do
    if ! is_installed "$pkg"; then
        still+=("$pkg")
    fi
done
if [ "${#still[@]}" -ne 0 ]; then
    echo "apt-ensure: still not installed after apt-get: ${still[*]}" >&2
    exit 1
fi
