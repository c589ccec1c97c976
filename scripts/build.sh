#!/usr/bin/env bash
# Builds libbpf (pinned Debian source, -fPIC), the native addon and the BPF objects.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-native.sh
bash scripts/build-bpf.sh
