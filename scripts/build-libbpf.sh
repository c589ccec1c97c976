#!/usr/bin/env bash
# Builds libbpf from Debian's source package, pinned to one version, as a static
# -fPIC library (third_party/libbpf/lib/libbpf.a) plus its headers
# (third_party/libbpf/include/bpf/*.h), for the native addon and the BPF objects.
# The source comes from apt (checksums verified against bookworm's signed Release
# files, the .dsc additionally against the sha256 pinned below) and is never
# committed. Idempotent: does nothing when this version is already built.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exactly what bookworm serves (`apt-cache showsrc libbpf`; the source version has no
# epoch, the binary packages are 1:1.1.2-0+deb12u1).
VERSION="1.1.2-0+deb12u1"
UPSTREAM="1.1.2"
DSC_SHA256="96f81dad2d5f1505ac8c3630249c77f7fcb9ab2f429c4386b2eee2149b7a8c4b"

dest="$PWD/third_party/libbpf"
stamp="$dest/.built-$VERSION"
headers=(libbpf.h bpf.h btf.h bpf_helpers.h bpf_helper_defs.h bpf_endian.h bpf_tracing.h bpf_core_read.h)

fail() {
  echo "build-libbpf: $*" >&2
  exit 1
}

built() {
  [ -f "$stamp" ] && [ -f "$dest/lib/libbpf.a" ] || return 1
  for h in "${headers[@]}"; do [ -f "$dest/include/bpf/$h" ] || return 1; done
}

if built; then exit 0; fi

for tool in apt-get make cc ar sha256sum flock; do
  command -v "$tool" >/dev/null || fail "$tool not found: apt-get install build-essential apt util-linux"
done
command -v dpkg-source >/dev/null || fail "dpkg-source not found: apt-get install dpkg-dev"
[ -f /usr/include/libelf.h ] || fail "libelf headers missing: apt-get install libelf-dev"
[ -f /usr/include/zlib.h ] || fail "zlib headers missing: apt-get install zlib1g-dev"
[ -f /etc/apt/sources.list.d/debian.sources ] ||
  fail "/etc/apt/sources.list.d/debian.sources not found: a Debian 12 (bookworm) machine is expected"

mkdir -p third_party
# One build at a time (two engineers or CI jobs may start this together).
exec 9>third_party/.libbpf.lock
flock 9
if built; then exit 0; fi

work=$(mktemp -d "$PWD/third_party/.libbpf-build.XXXXXX")
chmod 755 "$work"
trap 'rm -rf "$work" "$dest.new"' EXIT
mkdir -p "$work/parts" "$work/lists/partial" "$work/src" "$work/obj"

# A private deb-src list and package index, so the machine's apt setup is untouched.
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$work/parts/src.sources"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)

echo "build-libbpf: fetching Debian source libbpf=$VERSION"
apt-get -qq "${apt_opts[@]}" update >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log" >&2; fail "apt-get update of the deb-src index failed (no network to the Debian mirror?)"; }
(cd "$work/src" && apt-get -qq "${apt_opts[@]}" source --download-only "libbpf=$VERSION") >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log" >&2; fail "apt-get source libbpf=$VERSION failed: is that version still served by the mirror? (apt-cache showsrc libbpf)"; }

dsc="$work/src/libbpf_${VERSION}.dsc"
[ -f "$dsc" ] || fail "apt did not fetch $(basename "$dsc")"
echo "$DSC_SHA256  $dsc" | sha256sum --quiet -c - ||
  fail "$(basename "$dsc") does not match the pinned sha256 $DSC_SHA256: refusing to build"
# dpkg-source checks the tarballs against the .dsc's checksums and applies Debian's patches.
dpkg-source --no-copy -x "$dsc" "$work/src/libbpf" >"$work/dpkg.log" 2>&1 ||
  { cat "$work/dpkg.log" >&2; fail "dpkg-source -x $(basename "$dsc") failed"; }

echo "build-libbpf: building static -fPIC libbpf $UPSTREAM"
make -C "$work/src/libbpf/src" BUILD_STATIC_ONLY=y OBJDIR="$work/obj" EXTRA_CFLAGS="-fPIC -O2" \
  -j"$(nproc)" >"$work/make.log" 2>&1 ||
  { tail -40 "$work/make.log" >&2; fail "make of libbpf $UPSTREAM failed (see above)"; }
rm -rf "$dest.new"
mkdir -p "$dest.new/lib"
cp "$work/obj/libbpf.a" "$dest.new/lib/"
make -C "$work/src/libbpf/src" install_headers DESTDIR="$dest.new" PREFIX=/ INCLUDEDIR=/include \
  OBJDIR="$work/obj" >>"$work/make.log" 2>&1 ||
  { tail -20 "$work/make.log" >&2; fail "installing the libbpf headers failed"; }
for h in "${headers[@]}"; do
  [ -f "$dest.new/include/bpf/$h" ] || fail "libbpf $UPSTREAM did not install include/bpf/$h"
done
touch "$dest.new/.built-$VERSION"
# Swap in the new tree in one step so concurrent readers never see a half-built one.
rm -rf "$dest.old"
if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
mv "$dest.new" "$dest"
rm -rf "$dest.old"
echo "build-libbpf: $dest/lib/libbpf.a ($VERSION)"
