#!/usr/bin/env bash
# Builds the go-control-plane interop peer (test/xds-interop.test.ts) into a cache directory outside
# the repository and prints the binary's path. Idempotent: the binary is named by a hash of its
# sources, so an unchanged peer is never rebuilt. Without a recent enough `go`, the Go toolchain
# named by go.mod is fetched once from the Go module proxy (golang.org/toolchain is a module there).
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/go-xds-peer" && pwd)"
cache="${AGW_CACHE_DIR:-${HOME:-/root}/.cache/agw}"
mkdir -p "$cache"
key="$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)"
bin="$cache/go-xds-peer-$key"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

want="$(awk '$1 == "go" { print $2; exit }' "$src/go.mod")"
newer_or_equal() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
go_bin=""
if command -v go >/dev/null 2>&1; then
  have="$(go env GOVERSION 2>/dev/null | sed 's/^go//')"
  if [ -n "$have" ] && newer_or_equal "$have" "$want"; then go_bin="$(command -v go)"; fi
fi
if [ -z "$go_bin" ]; then
  arch="$(uname -m)"
  case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
  toolchain="$cache/go$want.linux-$arch"
  if [ ! -x "$toolchain/bin/go" ]; then
    zip="$cache/go$want.zip"
    curl -fsSL --retry 3 -o "$zip" \
      "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$want.linux-$arch.zip"
    rm -rf "$toolchain.tmp" && mkdir -p "$toolchain.tmp"
    unzip -q "$zip" -d "$toolchain.tmp"
    # The module zip holds golang.org/toolchain@VERSION/{bin,src,pkg,...}.
    mv "$toolchain.tmp"/golang.org/toolchain@*/ "$toolchain"
    chmod +x "$toolchain"/bin/* "$toolchain"/pkg/tool/*/* 2>/dev/null || true
    rm -rf "$toolchain.tmp" "$zip"
  fi
  go_bin="$toolchain/bin/go"
fi

(cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$go_bin" build -trimpath -o "$bin.tmp" .) >&2
mv "$bin.tmp" "$bin"
echo "$bin"
