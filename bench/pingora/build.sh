#!/usr/bin/env bash
# Builds the Pingora contender of bench/run.ts (main.rs on the `pingora` crate from crates.io) into a
# cache outside the repo, once per source hash, and prints the binary's path. A cold build takes
# about 4 minutes on two cores; it runs at the lowest CPU priority so it disturbs other work less.
#   --if-built   only print the path if that binary exists (exit 3 with the reason if not); never build
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${AGW_CACHE:-$HOME/.cache/agw}/pingora"
hash=$(cat "$here/Cargo.toml" "$here/Cargo.lock" "$here/main.rs" | sha256sum | cut -c1-16)
bin="$cache/agw-bench-pingora-$hash"
if [ ! -x "$bin" ]; then
  if [ "${1:-}" = "--if-built" ]; then
    echo "not built for the current sources (run: bash bench/pingora/build.sh; needs cargo and crates.io)" >&2
    exit 3
  fi
  cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
  [ -x "$cargo" ] || { echo "pingora: cargo not found (install Rust: rustup, or Debian's cargo)" >&2; exit 1; }
  CARGO_TARGET_DIR="$cache/target" nice -n 19 "$cargo" build --release --locked \
    --manifest-path "$here/Cargo.toml" >&2
  rm -f "$cache"/agw-bench-pingora-* # builds of earlier sources
  cp "$cache/target/release/agw-bench-pingora" "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
