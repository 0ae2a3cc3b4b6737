#!/usr/bin/env bash
# Installs what the Kubernetes manifests' schema test needs (tests/unit/test_k8s_schemas.py)
# from the Go module proxy with `go install`: kubeconform (schema validator) and kustomize
# (renders deploy/k8s), each in ~/.cache/matchmaking/<tool>-<version> (shared by every
# clone, as uv.sh's uv), linked into the clone's var/tools/bin where the test looks.
# The Kubernetes JSON schemas come from the kubernetes-validate package (uv.lock), not
# from the network: kubeconform's default schema location is on GitHub.
# Idempotent: only links when the pinned versions are there. Without a Go toolchain it
# installs nothing and exits 0, leaving the reason in var/k8s-tools-unavailable.txt: the
# kubeconform test then skips with that reason. A failed `go install` fails.
set -euo pipefail

cd "$(dirname "$0")/../.."
KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_VERSION=v5.8.1
BIN="$PWD/var/tools/bin"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/matchmaking"
REASON_FILE=var/k8s-tools-unavailable.txt
TOOLS=("kubeconform github.com/yannh/kubeconform/cmd/kubeconform $KUBECONFORM_VERSION"
       "kustomize sigs.k8s.io/kustomize/kustomize/v5 $KUSTOMIZE_VERSION")

missing=()
for tool in "${TOOLS[@]}"; do
    read -r name _ version <<<"$tool"
    [[ -x "$CACHE/$name-$version/$name" ]] || missing+=("$tool")
done

if ((${#missing[@]} > 0)); then
    GO="$(command -v go || true)"
    [[ -n "$GO" || ! -x /usr/local/go/bin/go ]] || GO=/usr/local/go/bin/go
    if [[ -z "$GO" ]]; then
        mkdir -p var
        echo "no Go toolchain (go on PATH or /usr/local/go/bin/go) to install kubeconform" \
            "$KUBECONFORM_VERSION and kustomize $KUSTOMIZE_VERSION with \`go install\`" >"$REASON_FILE"
        echo "k8s-tools.sh: $(cat "$REASON_FILE"); the schema test will skip" >&2
        exit 0
    fi
    mkdir -p "$CACHE"
    t0=$SECONDS
    # One at a time: on two cores a second build would only slow the first.
    for tool in "${missing[@]}"; do
        read -r name module version <<<"$tool"
        echo "k8s-tools.sh: go install $module@$version" >&2
        GOBIN="$CACHE/$name-$version.tmp-$$" "$GO" install "$module@$version"
        rm -rf "$CACHE/$name-$version"
        mv "$CACHE/$name-$version.tmp-$$" "$CACHE/$name-$version"
    done
    echo "k8s-tools.sh: installed in $((SECONDS - t0)) s" >&2
fi
mkdir -p "$BIN"
for tool in "${TOOLS[@]}"; do
    read -r name _ version <<<"$tool"
    ln -sfn "$CACHE/$name-$version/$name" "$BIN/$name"
done
rm -f "$REASON_FILE"
