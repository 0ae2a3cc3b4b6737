#!/usr/bin/env bash
# Runs `make demo` and `make test` from a fresh clone of this repository's current
# branch in a bare Debian root file system: debootstrap's minbase of a release plus
# git, make, python3 and ca-certificates, nothing else. It shows what a newcomer's
# machine needs; every step's duration ends up in the log.
#   scripts/bare_debian.sh ROOTFS [RELEASE]     (as root; RELEASE defaults to bookworm)
# ROOTFS (e.g. /var/tmp/debroot) must be outside the repository; it is created with
# debootstrap when missing (apt-get installs debootstrap when that is missing).
#
# The chroot shares this machine's network, so the platform inside runs on other
# ports (deploy/local/ports.env with MATCHMAKING_PORT_OFFSET, default 20000: Kafka
# 29092, PostgreSQL 25432, services 28000-28004) beside anything running here on
# the default ones. It runs in its own PID namespace: whatever it starts (Kafka,
# PostgreSQL, the services) is killed when it ends. A policy-rc.d keeps Debian's
# package scripts from starting daemons (PostgreSQL's own cluster) in the chroot,
# as is usual in a chroot.
set -euo pipefail

ROOTFS="${1:?usage: $0 ROOTFS [RELEASE]}"
RELEASE="${2:-bookworm}"
OFFSET="${MATCHMAKING_PORT_OFFSET:-20000}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BRANCH="$(git -C "$REPO" rev-parse --abbrev-ref HEAD)"

log() { printf '%s [bare-debian] %s\n' "$(date +%T)" "$*"; }

[[ "$(id -u)" == 0 ]] || { echo "$0: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
case "$(realpath -m "$ROOTFS")/" in
    "$REPO"/*) echo "$0: $ROOTFS is inside the repository" >&2; exit 1 ;;
esac

if [[ ! -x "$ROOTFS/usr/bin/python3" ]]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    log "debootstrap $RELEASE into $ROOTFS (minbase + git make python3 ca-certificates)"
    SECONDS=0
    debootstrap --variant=minbase --include=git,make,python3,ca-certificates \
        "$RELEASE" "$ROOTFS" http://deb.debian.org/debian >/dev/null
    log "debootstrap took ${SECONDS}s"
fi

# What the chroot needs from this machine: name resolution, the certificate
# authorities this machine added to its trust store (e.g. an egress proxy's, in
# /usr/local/share/ca-certificates), /dev, /sys; /proc is mounted by unshare for
# the new PID namespace.
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1
fi
[[ -e "$ROOTFS/etc/hosts" ]] || printf '127.0.0.1 localhost\n::1 localhost\n' >"$ROOTFS/etc/hosts"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
mounted=()
cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        m="${mounted[i]}"
        umount -R "$m" 2>/dev/null || umount -l "$m" || true
    done
}
trap cleanup EXIT
for d in dev sys; do
    mkdir -p "$ROOTFS/$d"
    mount --rbind "/$d" "$ROOTFS/$d"
    mount --make-rslave "$ROOTFS/$d"
    mounted+=("$ROOTFS/$d")
done

# A fresh clone of this branch, from a bundle (the chroot sees nothing of this repo).
git -C "$REPO" bundle create "$ROOTFS/root/matchmaking.bundle" "$BRANCH" 2>/dev/null
rm -rf "$ROOTFS/root/matchmaking"

log "chroot: clone $BRANCH, then make demo and make test (port offset $OFFSET)"
unshare --pid --fork --mount-proc="$ROOTFS/proc" \
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        MATCHMAKING_PORT_OFFSET="$OFFSET" BRANCH="$BRANCH" \
    bash -c '
        set -uo pipefail
        step() { local t0=$SECONDS; echo "== $*"; "$@"; local rc=$?
                 echo "== $* -> exit $rc in $((SECONDS - t0))s"; return $rc; }
        step git clone -q -b "$BRANCH" /root/matchmaking.bundle /root/matchmaking || exit 1
        cd /root/matchmaking
        . deploy/local/ports.env
        step make demo
        demo=$?
        step make test
        test=$?
        echo "== results: make demo exit $demo, make test exit $test"
        [[ $demo == 0 && $test == 0 ]]
    '
