#!/usr/bin/env bash
# Everything a fresh Debian 12 machine (root, Node 20) needs to run ambient and its
# tests: Debian packages, node_modules, libbpf (from Debian's pinned source
# package), the native addon and the BPF objects, and a mounted bpffs.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang llvm libelf-dev zlib1g-dev pkg-config cmake make g++ dpkg-dev iproute2 util-linux procps
  bpftool iperf3 wrk nghttp2-client nginx prometheus stunnel4 openssl tcpdump libnghttp2-dev libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Prometheus is a tool here, not a service: don't let the package start one.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
  echo "setup: mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

bash scripts/build.sh
echo "setup: done"
