#!/usr/bin/env bash
# Installs what the dashboard's browser test needs: Debian's `chromium` package at
# /usr/bin/chromium (Playwright is pointed at it, so no browser build is ever
# downloaded) and `libatomic1`, which Playwright's bundled node driver links to.
# Idempotent: does nothing when both are there.
# Needs root or passwordless sudo. Without either it installs nothing and exits 0,
# leaving the reason in var/browser-unavailable.txt: the browser test then skips
# with that reason and the rest of `make test` runs. A failed install (as root) fails.
set -euo pipefail

cd "$(dirname "$0")/../.."
CHROMIUM=/usr/bin/chromium
REASON_FILE=var/browser-unavailable.txt

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
[[ -x "$CHROMIUM" ]] || missing+=(chromium)
if command -v dpkg-query >/dev/null 2>&1 && ! installed libatomic1; then
    missing+=(libatomic1)
fi
if ((${#missing[@]} == 0)); then
    rm -f "$REASON_FILE"
    exit 0
fi

unavailable() {
    local reason="missing ${missing[*]} (for $CHROMIUM and Playwright's driver)"
    reason+=" and deploy/local/browser.sh cannot install them: $1"
    mkdir -p "$(dirname "$REASON_FILE")"
    printf '%s\n' "$reason" >"$REASON_FILE"
    echo "browser.sh: $reason; the browser test will skip" >&2
    exit 0
}

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || unavailable "not root, no sudo"
    sudo -n true 2>/dev/null || unavailable "not root, sudo asks for a password"
    SUDO=(sudo -n)
fi
command -v apt-get >/dev/null 2>&1 || unavailable "no apt-get"

echo "browser.sh: installing ${missing[*]} (for the dashboard's browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale or empty package list finds no candidate: refresh it first.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${SUDO[@]}" apt-get update -qq
fi
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
rm -f "$REASON_FILE"
"$CHROMIUM" --version >&2
