#!/usr/bin/env bash
# `npm ci` in web/ from the committed package-lock.json, skipped when
# web/node_modules already matches it (a stamp holds the hash of the lock,
# package.json and the node version). Install scripts are not run: the
# front-end packages are plain files, and nothing may be downloaded at
# install time.
#
#   scripts/web-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if [ ! -f web/package.json ]; then
    echo "web-deps: no web/package.json yet; skipping npm ci" >&2
    exit 0
fi
[ -f web/package-lock.json ] || die "web/package-lock.json is missing; npm ci needs the committed lock"
command -v npm >/dev/null 2>&1 || die "npm not found"

stamp=web/node_modules/.tether-npm-ci.stamp
want=$(
    cd web
    sha256sum package.json package-lock.json
    node --version 2>/dev/null || true
)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "web-deps: web/node_modules is up to date"
    exit 0
fi

echo "web-deps: npm ci in web/"
(cd web && npm ci --ignore-scripts --no-audit --no-fund)
printf '%s\n' "$want" >"$stamp"
