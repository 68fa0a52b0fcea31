#!/bin/sh
# Build the Debian packages from this checkout:
#
#   scripts/build-debs.sh [OUTDIR]      (default: target/debian)
#
# runs dpkg-buildpackage (binary packages only, unsigned) with the cargo on PATH, reusing
# target/release when it is up to date, and leaves in OUTDIR:
#   libxenstore4-rs_V_ARCH.deb     libxenstore.so.4, in place of Debian's libxenstore4
#   libxenstore-rs-dev_V_ARCH.deb  headers, xenstore.pc, the libxenstore.so link
#   xenstored-rs_V_ARCH.deb        the daemon, /usr/sbin/xenstored-rs, and its man page
#   their -dbgsym .ddeb files, and xenstore-rs_V_ARCH.changes / .buildinfo
# Needs dpkg-dev, debhelper and help2man (apt-get install dpkg-dev debhelper help2man).
# Install with: apt-get install ./OUTDIR/*.deb    (docs/packaging.md)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"

version=$(dpkg-parsechangelog -SVersion)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
base=xenstore-rs_${version}_$arch

# dpkg-buildpackage writes into the parent directory unless told otherwise: the packages go
# straight to OUTDIR (dh_builddeb), and the .changes and .buildinfo, which list them, too.
rm -f "$out"/*.deb "$out"/*.ddeb "$out/$base.changes" "$out/$base.buildinfo"
XS_DEB_OUTDIR=$out dpkg-buildpackage --build=binary --no-sign \
    --buildinfo-file="$out/$base.buildinfo" --buildinfo-option="-u$out" \
    --changes-file="$out/$base.changes" --changes-option="-u$out"
# dh_clean: the work files under debian/ go, cargo's target/ stays.
debian/rules clean >/dev/null
echo "packages in $out:"
ls -1 "$out"
