#!/usr/bin/env bash
# Installs the browser the dashboard's browser test drives: Debian's `chromium`
# package at /usr/bin/chromium (Playwright is pointed at it, so no browser build
# is ever downloaded). Idempotent: does nothing when it is already there.
# Needs root (as on the developers' machines and CI) or passwordless sudo.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "browser.sh: $CHROMIUM is missing and we are not root; install Debian's chromium" >&2
        exit 1
    }
    SUDO=(sudo -n)
fi

echo "browser.sh: installing Debian's chromium (for the dashboard's browser test)" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale or empty package list finds no candidate: refresh it first.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${SUDO[@]}" apt-get update -qq
fi
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version >&2
