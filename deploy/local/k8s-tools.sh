#!/usr/bin/env bash
# Installs what the Kubernetes manifests' schema test needs (tests/unit/test_k8s_schemas.py)
# into var/tools/bin, from the Go module proxy with `go install`:
#   kubeconform (schema validator) and kustomize (renders deploy/k8s).
# The Kubernetes JSON schemas come from the kubernetes-validate package (uv.lock), not
# from the network: kubeconform's default schema location is on GitHub.
# Idempotent: does nothing when the pinned versions are there. Without a Go toolchain it
# installs nothing and exits 0, leaving the reason in var/k8s-tools-unavailable.txt: the
# kubeconform test then skips with that reason. A failed `go install` fails.
set -euo pipefail

cd "$(dirname "$0")/../.."
KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_VERSION=v5.8.1
BIN="$PWD/var/tools/bin"
REASON_FILE=var/k8s-tools-unavailable.txt

installed() {  # binary, version: true when var/tools/bin has that version
    [[ -x "$BIN/$1" && "$(cat "$BIN/.$1.version" 2>/dev/null)" == "$2" ]]
}

if installed kubeconform "$KUBECONFORM_VERSION" && installed kustomize "$KUSTOMIZE_VERSION"; then
    rm -f "$REASON_FILE"
    exit 0
fi

GO="$(command -v go || true)"
[[ -n "$GO" || ! -x /usr/local/go/bin/go ]] || GO=/usr/local/go/bin/go
if [[ -z "$GO" ]]; then
    mkdir -p var
    echo "no Go toolchain (go on PATH or /usr/local/go/bin/go) to install kubeconform" \
        "$KUBECONFORM_VERSION and kustomize $KUSTOMIZE_VERSION with \`go install\`" >"$REASON_FILE"
    echo "k8s-tools.sh: $(cat "$REASON_FILE"); the schema test will skip" >&2
    exit 0
fi

mkdir -p "$BIN"
t0=$SECONDS
echo "k8s-tools.sh: go install kubeconform@$KUBECONFORM_VERSION kustomize@$KUSTOMIZE_VERSION" >&2
# One at a time: on two cores the second build would only slow the first.
GOBIN="$BIN" "$GO" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
echo "$KUBECONFORM_VERSION" >"$BIN/.kubeconform.version"
GOBIN="$BIN" "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
echo "$KUSTOMIZE_VERSION" >"$BIN/.kustomize.version"
rm -f "$REASON_FILE"
echo "k8s-tools.sh: installed in $((SECONDS - t0)) s" >&2
