#!/usr/bin/env bash
# Compiles bpf/*.bpf.c into build/bpf/*.bpf.o and the ABI layout probe into
# build/bpf/abi-layout. Needs clang and the libbpf headers that
# scripts/build-libbpf.sh installs under third_party/libbpf/include.
set -euo pipefail
cd "$(dirname "$0")/.."
inc=${LIBBPF_INCLUDE:-third_party/libbpf/include}
if [ ! -f "$inc/bpf/bpf_helpers.h" ]; then
  echo "build-bpf: $inc/bpf/bpf_helpers.h is missing: run scripts/build-libbpf.sh first" >&2
  exit 1
fi
command -v clang >/dev/null || { echo "build-bpf: clang not found: apt-get install clang llvm" >&2; exit 1; }
arch_inc=/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
mkdir -p build/bpf
for src in bpf/*.bpf.c; do
  out=build/bpf/$(basename "${src%.c}").o
  clang -O2 -g -Wall -Werror -target bpf -I "$inc" -I "$arch_inc" -I bpf -c "$src" -o "$out"
done
cc -Wall -Werror -I bpf -o build/bpf/abi-layout bpf/abi-layout.c
# Test-only objects of the native addon's tests.
mkdir -p build/bpf-test
for src in native/testdata/*.bpf.c; do
  clang -O2 -g -Wall -Werror -target bpf -I "$inc" -I "$arch_inc" -c "$src" -o "build/bpf-test/$(basename "${src%.c}").o"
done
echo "build-bpf: $(ls build/bpf/*.bpf.o | wc -l) objects in build/bpf"
