#!/usr/bin/env bash
# Installs the browser the dashboard's browser test drives: Debian's `chromium`
# package at /usr/bin/chromium (Playwright is pointed at it, so no browser build
# is ever downloaded). Idempotent: does nothing when it is already there.
# Needs root or passwordless sudo. Without either it installs nothing and exits 0,
# leaving the reason in var/browser-unavailable.txt: the browser test then skips
# with that reason and the rest of `make test` runs. A failed install (as root) fails.
set -euo pipefail

cd "$(dirname "$0")/../.."
CHROMIUM=/usr/bin/chromium
REASON_FILE=var/browser-unavailable.txt

if [[ -x "$CHROMIUM" ]]; then
    rm -f "$REASON_FILE"
    exit 0
fi

unavailable() {
    mkdir -p "$(dirname "$REASON_FILE")"
    printf '%s\n' "$1" >"$REASON_FILE"
    echo "browser.sh: $1; the browser test will skip" >&2
    exit 0
}

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 \
        || unavailable "$CHROMIUM is missing and deploy/local/browser.sh cannot install it: not root, no sudo"
    sudo -n true 2>/dev/null \
        || unavailable "$CHROMIUM is missing and deploy/local/browser.sh cannot install it: not root, sudo asks for a password"
    SUDO=(sudo -n)
fi
command -v apt-get >/dev/null 2>&1 \
    || unavailable "$CHROMIUM is missing and deploy/local/browser.sh cannot install it: no apt-get"

echo "browser.sh: installing Debian's chromium (for the dashboard's browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale or empty package list finds no candidate: refresh it first.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${SUDO[@]}" apt-get update -qq
fi
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
rm -f "$REASON_FILE"
"$CHROMIUM" --version >&2
