#!/usr/bin/env bash
# The Debian packages the tests and bench drive as child processes, installed with apt: the one
# command a fresh machine needs before `npm test` runs everything (npm test prints it when tests
# were skipped), and the first step of .ci/run.
#   bash scripts/install-tools.sh           install what is missing (as root), stop their daemons
#   bash scripts/install-tools.sh --check   print the missing packages (nothing: all there), exit 0
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Tools the tests and bench drive as child processes. Checked by command so a
# machine that already has them (any nginx flavour) skips apt entirely.
missing=()
need() { command -v "$2" >/dev/null 2>&1 || missing+=("$1"); }
need curl curl
need nginx-light nginx
need haproxy haproxy
need wrk wrk
need nghttp2-client h2load
need redis-server redis-server
need openssl openssl
need iproute2 ip
# the dashboard test drives Debian's headless Chromium through playwright-core
need chromium chromium
# agw top's test drives it in a real terminal
need tmux tmux
# the eBPF agent: its BPF object and libbpf addon are built with clang at test time; its tests
# look at lo with tcpdump and at attachments with bpftool
need clang clang
need llvm llvm-objdump
need bpftool bpftool
need tcpdump tcpdump
# the go-control-plane interop peer: its build script unpacks a Go toolchain from the module proxy
need unzip unzip
# the C plugin guest (test/plugins-c.test.ts): clang for wasm32-wasi with wasi-libc
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
need lld wasm-ld
[ -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a ] || missing+=(libclang-rt-14-dev-wasm32)
# the container image (scripts/image/build.ts, test/image.test.ts): umoci unpacks it, runc runs it
# (Debian's crun 1.8 refuses this machine's hybrid cgroup hierarchy), strip trims the Node binary
need runc runc
need umoci umoci
need binutils strip
[ -f /usr/include/bpf/libbpf.h ] || missing+=(libbpf-dev)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${1:-}" = --check ]; then
  echo "${missing[@]}"
  exit 0
fi
if ((${#missing[@]})); then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The packages start system daemons on :80/:6379 etc.; the tests start their
# own instances on free ports and must not find stray ones.
for svc in nginx haproxy redis-server; do
  if [ -d /run/systemd/system ]; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$svc" ]; then
    "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
  fi
done
