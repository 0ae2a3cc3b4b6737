#!/usr/bin/env bash
# Prints the path of uv at the version given, installing it first when needed.
#   deploy/local/uv.sh VERSION
# A uv of that version on PATH is used as it is. Otherwise uv is installed with pip
# into a private virtual environment made by the system's python3 (`python3 -m venv`),
# in $UV_TOOL_DIR (default ~/.cache/matchmaking/uv-VERSION, shared by every clone):
# Debian's Python refuses `pip3 install` into itself (PEP 668, "externally managed").
# Debian ships the venv module separately (python3-venv): packages.sh installs it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${1:?usage: uv.sh VERSION}"
DIR="${UV_TOOL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/matchmaking/uv-$VERSION}"

is_version() { [[ "$("$1" --version 2>/dev/null)" == "uv $VERSION"* ]]; }

if command -v uv >/dev/null 2>&1 && is_version uv; then
    command -v uv
    exit 0
fi
if [[ -x "$DIR/bin/uv" ]] && is_version "$DIR/bin/uv"; then
    echo "$DIR/bin/uv"
    exit 0
fi

bash "$HERE/packages.sh" venv >&2
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
if ! is_version "$DIR/bin/uv"; then
    t0=$SECONDS
    echo "uv.sh: installing uv $VERSION into $DIR (python3 -m venv, then pip)" >&2
    rm -rf "$DIR"
    python3 -m venv "$DIR"
    "$DIR/bin/python" -m pip install -q --disable-pip-version-check "uv==$VERSION" >&2
    echo "uv.sh: uv $VERSION installed in $((SECONDS - t0)) s" >&2
fi
echo "$DIR/bin/uv"
