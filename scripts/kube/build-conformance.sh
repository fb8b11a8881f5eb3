#!/usr/bin/env bash
# Builds what the Gateway API conformance harness (scripts/kube/conformance.ts) needs besides the
# API server, into caches outside the repository, once per machine:
# - kube-controller-manager, from the same k8s.io/kubernetes as the API server (scripts/kube/build.sh);
# - from sigs.k8s.io/gateway-api/conformance (Go module proxy): echo-basic, the suite's echo backend
#   (run as a process by the stand-in kubelet, scripts/kube/kubelet.ts: no image can be pulled here),
#   and the suite itself as a test binary (conformance.test).
# Prints the directory holding echo-basic and conformance.test.
set -euo pipefail

GATEWAY_API_VERSION="${AGW_GATEWAY_API_VERSION:-v1.6.0}"
CACHE_ROOT="${AGW_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agw-k8s}"
OUT="$CACHE_ROOT/gateway-api-conformance-$GATEWAY_API_VERSION"
HERE="$(cd "$(dirname "$0")" && pwd)"

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "scripts/kube/build-conformance.sh: go is not installed" >&2; exit 1; }

bash "$HERE/build.sh" kube-controller-manager >&2

if [[ -x "$OUT/echo-basic" && -x "$OUT/conformance.test" ]]; then
  echo "$OUT"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
cat > go.mod <<GOMOD
module agw.dev/conformance-build

go 1.26.0

require (
	sigs.k8s.io/gateway-api $GATEWAY_API_VERSION
	sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION
)
GOMOD
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "sigs.k8s.io/gateway-api/conformance"
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
)
GO
go mod tidy >&2
mkdir -p "$OUT.partial"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT.partial/echo-basic" sigs.k8s.io/gateway-api/conformance/echo-basic >&2
CGO_ENABLED=0 go test -c -trimpath -ldflags "-s -w" -o "$OUT.partial/conformance.test" sigs.k8s.io/gateway-api/conformance >&2
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "$OUT"
