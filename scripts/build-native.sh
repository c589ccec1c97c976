#!/usr/bin/env bash
# Builds the native addon (build/native/Release/ambient_native.node) with cmake-js against
# Node-API 8, statically linked with the pinned libbpf.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-libbpf.sh
npx cmake-js compile --directory native --out build/native --log-level error >/dev/null
if ldd build/native/Release/ambient_native.node | grep -q libbpf; then
  echo "build-native: the addon links a shared libbpf; it must be static" >&2
  exit 1
fi
echo "build-native: build/native/Release/ambient_native.node"
