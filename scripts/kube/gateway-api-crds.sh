#!/usr/bin/env bash
# Fetches the Gateway API module (sigs.k8s.io/gateway-api) through the Go module proxy into Go's
# module cache, outside the repository, and prints the directory holding its standard-channel CRDs
# (gateway.networking.k8s.io_*.yaml). Upstream YAML is read from there by the tests, never committed.
set -euo pipefail

# v1.7 and later need a newer Go than these machines have to unpack the module.
GATEWAY_API_VERSION="${AGW_GATEWAY_API_VERSION:-v1.6.0}"

# Tests call this without Go's directory on PATH (CI adds it only for its build steps).
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "scripts/kube/gateway-api-crds.sh: go is not installed" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
DIR="$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
CRDS="$DIR/config/crd/standard"
[[ -f "$CRDS/gateway.networking.k8s.io_httproutes.yaml" ]] || {
  echo "scripts/kube/gateway-api-crds.sh: cannot fetch sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" >&2
  exit 1
}
echo "$CRDS"
