#!/bin/bash
# Download Debian bookworm's Xen 4.17 xenstore packages and unpack them (no
# installation) into DIR/root.  Idempotent: does nothing when DIR already holds
# the same package set.  Usage: fetch.sh [DIR]   (default <repo>/.reference)
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ $# -ge 1 ] && ref_set_dir "$(realpath -m "$1")"

# The daemons, tools and test program, plus every library they load.
PACKAGES=(
    libxenstore4 xenstore-utils xen-utils-4.17 xen-utils-common libxen-dev
    libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
    libxenmisc4.17 libxentoolcore1 libxentoollog1 libxendevicemodel1
    libxenhypfs1 libyajl2
)
STAMP=$REF_DIR/.fetched

fetched() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PACKAGES[*]}" ] && [ -x "$REF_BIN/xenstored" ]
}
fetched && exit 0

# Tests start daemons in parallel, and each start may land here: one fetches,
# the others wait for it and then find the work done.
mkdir -p "$REF_DIR"
exec 8>"$REF_DIR/.fetch.lock"
flock 8
fetched && exit 0

command -v apt-get >/dev/null || ref_die "apt-get not found: a Debian 12 host is required"
mkdir -p "$REF_DIR/debs"
cd "$REF_DIR/debs"
rm -f ./*.deb

download() { apt-get download "${PACKAGES[@]}"; }
if ! download >download.log 2>&1; then
    echo "apt-get download failed, refreshing package lists" >&2
    apt-get update >>download.log 2>&1 || { cat download.log >&2; ref_die "apt-get update failed"; }
    download >>download.log 2>&1 || { cat download.log >&2; ref_die "apt-get download failed"; }
fi

rm -rf "$REF_ROOT.tmp"
mkdir -p "$REF_ROOT.tmp"
for deb in ./*.deb; do
    dpkg -x "$deb" "$REF_ROOT.tmp"
done
rm -rf "$REF_ROOT"
mv "$REF_ROOT.tmp" "$REF_ROOT"
echo "${PACKAGES[*]}" >"$STAMP"
echo "reference packages unpacked in $REF_ROOT" >&2
