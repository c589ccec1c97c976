#!/usr/bin/env bash
# Builds libbpf from Debian's source package, pinned to one version, as a static
# -fPIC library (third_party/libbpf/lib/libbpf.a) plus its headers
# (third_party/libbpf/include/bpf/*.h), for the native addon and the BPF objects.
# The source is fetched with apt (checksums verified by apt) and never committed.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="1.1.2-0+deb12u1"
UPSTREAM="1.1.2"
dest="$PWD/third_party/libbpf"
stamp="$dest/.built-$UPSTREAM"
if [ -f "$stamp" ] && [ -f "$dest/lib/libbpf.a" ] && [ -f "$dest/include/bpf/bpf_helpers.h" ]; then
  exit 0
fi

work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial" "$work/src"
if [ ! -f /etc/apt/sources.list.d/debian.sources ]; then
  echo "build-libbpf: /etc/apt/sources.list.d/debian.sources not found: a Debian 12 machine is expected" >&2
  exit 1
fi
# A private deb-src list, so the machine's own apt configuration is left alone.
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/parts/src.sources"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/parts" -o "Dir::State::Lists=$work/lists")
echo "build-libbpf: fetching Debian source libbpf=$VERSION"
apt-get -qq "${apt_opts[@]}" update
(cd "$work/src" && apt-get -qq "${apt_opts[@]}" source --download-only "libbpf=$VERSION" 2>&1 | grep -v 'unsandboxed' || true)
orig="$work/src/libbpf_${UPSTREAM}.orig.tar.gz"
if [ ! -f "$orig" ]; then
  echo "build-libbpf: apt did not fetch $orig (is libbpf=$VERSION still served by the Debian mirror?)" >&2
  exit 1
fi
tar -xzf "$orig" -C "$work/src"
srcdir="$work/src/libbpf-$UPSTREAM/src"
echo "build-libbpf: building static -fPIC libbpf $UPSTREAM"
mkdir -p "$work/obj"
make -s -C "$srcdir" BUILD_STATIC_ONLY=y OBJDIR="$work/obj" EXTRA_CFLAGS="-fPIC -O2" -j"$(nproc)" >/dev/null
rm -rf "$dest"
mkdir -p "$dest/lib"
cp "$work/obj/libbpf.a" "$dest/lib/"
make -s -C "$srcdir" install_headers DESTDIR="$dest" PREFIX=/ INCLUDEDIR=/include >/dev/null
touch "$stamp"
echo "build-libbpf: $dest/lib/libbpf.a"
