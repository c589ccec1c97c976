#!/usr/bin/env bash
# Builds the native addon build/Release/ambient_native.node (Node-API 8, cmake-js,
# build tree in build/native) statically linked with the pinned libbpf that
# scripts/build-libbpf.sh builds first. With --asan: the AddressSanitizer build
# build/asan/ambient_native.node instead (build tree build/native-asan), loaded by
# native/asan.test.ts into a node that preloads the compiler's libasan.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "build-native: $*" >&2
  exit 1
}

bash scripts/build-libbpf.sh
command -v cmake >/dev/null || fail "cmake not found: apt-get install cmake"
[ -d node_modules/cmake-js ] && [ -d node_modules/node-addon-api ] || fail "cmake-js or node-addon-api missing: run npm ci"

out=build/Release/ambient_native.node
tree=build/native
extra=()
if [ "${1:-}" = "--asan" ]; then
  out=build/asan/ambient_native.node
  tree=build/native-asan
  extra=(--CDAMBIENT_ASAN=ON)
fi
mkdir -p build
log=$tree.log
if ! npx cmake-js compile --directory native --out "$tree" --log-level warn "${extra[@]}" >"$log" 2>&1; then
  tail -60 "$log" >&2
  fail "compiling the addon failed (full log: $log)"
fi
[ -f "$out" ] || fail "cmake-js succeeded but $out is missing (see $log)"
if ldd "$out" | grep -q libbpf; then
  fail "$out links a shared libbpf; it must link third_party/libbpf/lib/libbpf.a statically"
fi
# The HBONE engine's TLS and HTTP/2 are Node's own (native/CMakeLists.txt): no second
# copy linked in, and every OpenSSL/nghttp2 symbol it needs exported by this node.
if ldd "$out" | grep -Eq 'libssl|libcrypto|libnghttp2'; then
  fail "$out links a shared OpenSSL or nghttp2; it must use the ones inside node"
fi
node_bin=$(command -v node)
missing=$(comm -23 \
  <(nm -D --undefined-only "$out" | awk '{print $2}' | grep -E '^(SSL_|BIO_|X509|ERR_|EVP_|PEM_|OPENSSL_|ASN1_|GENERAL_NAME|nghttp2_)' | sort -u) \
  <(nm -D --defined-only "$node_bin" | awk '{print $3}' | sort -u))
if [ -n "$missing" ]; then
  fail "$node_bin does not export what the hbone engine needs (a node built without its bundled OpenSSL/nghttp2?): $(echo "$missing" | tr '\n' ' ')"
fi
echo "build-native: $out"
