#!/usr/bin/env bash
# Builds the helm command from the Go module proxy (helm.sh/helm/v3) into a cache outside the
# repository, keyed by version, so a machine builds it once; test/kubernetes.test.ts renders
# deploy/helm/agw with it. Prints the path of the binary.
set -euo pipefail

HELM_VERSION="${AGW_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${AGW_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agw-helm}"
OUT="$CACHE_ROOT/$HELM_VERSION"

if [[ -x "$OUT/helm" ]]; then
  echo "$OUT/helm"
  exit 0
fi
# Tests call this without Go's directory on PATH (CI adds it only for its build steps).
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "scripts/kube/helm.sh: go is not installed" >&2; exit 1; }
rm -rf "$OUT.partial"
mkdir -p "$OUT.partial"
GOBIN="$OUT.partial" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "$OUT/helm"
