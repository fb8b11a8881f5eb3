#!/usr/bin/env bash
# Builds the official bindings generator (wit-bindgen-cli, from crates.io) once per version into a
# cache outside the repo, for the C guest test (plugins/c-guest). Prints the binary's path.
set -euo pipefail
version=0.63.0
root="${AGW_CACHE:-$HOME/.cache/agw}/cargo/wit-bindgen-$version"
bin="$root/bin/wit-bindgen"
if [ ! -x "$bin" ]; then
  cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
  "$cargo" install --quiet --locked --root "$root" "wit-bindgen-cli@$version" >&2
fi
echo "$bin"
