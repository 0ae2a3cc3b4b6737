#!/usr/bin/env bash
# The Debian packages the local scripts need, declared in one place, and installed
# when missing (as root or with passwordless sudo; otherwise it says what to install).
#   deploy/local/packages.sh GROUP...     (groups: venv, infra)
# Not listed: what you need before you can run anything here (git, make, python3),
# and PostgreSQL, which infra.sh installs only when it provisions a local server.
set -euo pipefail

# group  check                  package               needed by
REQUIREMENTS="
venv     py:ensurepip           python3-venv          uv.sh: the private venv uv is installed in
venv     file:/etc/ssl/certs/ca-certificates.crt ca-certificates  HTTPS to PyPI and Maven Central
infra    file:/etc/ssl/certs/ca-certificates.crt ca-certificates  HTTPS to PyPI and Maven Central
infra    curl                   curl                  services.sh: readiness checks
infra    java                   default-jdk-headless  infra.sh: the Kafka broker and its tools
infra    mvn                    maven                 infra.sh: fetches Kafka's jars from Maven Central
infra    flock                  util-linux            infra.sh: one up/down at a time
infra    runuser                util-linux            infra.sh: runs PostgreSQL as its own user
infra    sha256sum              coreutils             infra.sh: cache keys
infra    file:/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf fonts-dejavu-core  the printable PDFs (shared/printable.py): a font for every European name
"

present() {
    case "$1" in
        py:*) python3 -c "import ${1#py:}" 2>/dev/null ;;
        file:*) [[ -e "${1#file:}" ]] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

(($# > 0)) || { echo "usage: $0 GROUP... (venv, infra)" >&2; exit 2; }
missing=()
while read -r group check package _; do
    [[ -n "$group" ]] || continue
    [[ " $* " == *" $group "* ]] || continue
    present "$check" && continue
    [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
done <<<"$REQUIREMENTS"
((${#missing[@]} > 0)) || exit 0

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
        echo "packages.sh: missing Debian packages: ${missing[*]}" >&2
        echo "packages.sh: not root and no passwordless sudo; run as root:" \
            "apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    SUDO=(sudo -n)
fi
t0=$SECONDS
echo "packages.sh: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "packages.sh: installed ${missing[*]} in $((SECONDS - t0)) s" >&2
