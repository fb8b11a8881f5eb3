#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from the Go module proxy into a cache outside the
# repository, keyed by version, so a machine builds them once. Prints the directory holding the
# binaries. A binary already in the cache is not built again (kubectl came later than the others).
# Arguments name more k8s.io/kubernetes commands to build too (scripts/kube/build-conformance.sh
# asks for kube-controller-manager).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/* staging module
# with ./staging/... . A wrapper module requires it and replaces each staging module with its
# published v0.MINOR.PATCH release instead.
set -euo pipefail

KUBE_VERSION="${AGW_KUBE_VERSION:-v1.37.2}"
CACHE_ROOT="${AGW_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agw-k8s}"
OUT="$CACHE_ROOT/$KUBE_VERSION"

EXTRA=("$@")
missing=0
for bin in kube-apiserver etcd kubectl "${EXTRA[@]}"; do [[ -x "$OUT/$bin" ]] || missing=1; done
if [[ $missing == 0 ]]; then
  echo "$OUT"
  exit 0
fi

# npm run kube:local -- --build calls this without Go's directory on PATH.
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "scripts/kube/build.sh: go is not installed" >&2; exit 1; }

STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

KK_GOMOD="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
[[ -f "$KK_GOMOD" ]] || { echo "scripts/kube/build.sh: cannot fetch k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }

GO_DIRECTIVE="$(grep -m1 -E '^go ' "$KK_GOMOD")"
{
  echo "module agw.dev/kube-build"
  echo
  echo "$GO_DIRECTIVE"
  grep -E '^godebug ' "$KK_GOMOD" || true
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  grep -oE '^\s*k8s\.io/[^ ]+ => \./staging/' "$KK_GOMOD" |
    awk -v v="$STAGING_VERSION" '{ print "replace " $1 " => " $1 " " v }'
} > go.mod
{
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  printf '\t_ "go.etcd.io/etcd/server/v3"\n'
  for bin in kube-apiserver kubectl "${EXTRA[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$bin"; done
  printf ')\n'
} > tools.go

go mod tidy >&2
mkdir -p "$OUT.partial"
for bin in kube-apiserver etcd kubectl "${EXTRA[@]}"; do
  if [[ -x "$OUT/$bin" ]]; then cp "$OUT/$bin" "$OUT.partial/$bin"; fi
done
# Without these the server reports v0.0.0-master, and clients that check version skew complain.
VERSION_PKG=k8s.io/component-base/version
MINOR="${KUBE_VERSION#v1.}"
MINOR="${MINOR%%.*}"
KUBE_LDFLAGS="-s -w -X $VERSION_PKG.gitVersion=$KUBE_VERSION -X $VERSION_PKG.gitMajor=1 -X $VERSION_PKG.gitMinor=$MINOR"
[[ -x "$OUT.partial/kube-apiserver" ]] ||
  CGO_ENABLED=0 go build -trimpath -ldflags "$KUBE_LDFLAGS" \
    -o "$OUT.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
[[ -x "$OUT.partial/etcd" ]] ||
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT.partial/etcd" go.etcd.io/etcd/server/v3 >&2
# kubectl for the local walk-through in docs/kubernetes.md (npm run kube:local).
[[ -x "$OUT.partial/kubectl" ]] ||
  CGO_ENABLED=0 go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$OUT.partial/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
for bin in "${EXTRA[@]}"; do
  [[ -x "$OUT.partial/$bin" ]] ||
    CGO_ENABLED=0 go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$OUT.partial/$bin" "k8s.io/kubernetes/cmd/$bin" >&2
done
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "$OUT"
