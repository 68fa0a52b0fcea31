# Shared settings for the reference-daemon scripts.  Source it, don't run it.
#
# REF_DIR   where fetch.sh unpacks Debian's Xen packages and build.sh puts the
#           helpers (default <repo>/.reference, override with XS_REFERENCE_DIR)
# REF_ROOT  the unpacked filesystem tree (REF_DIR/root)
# REF_LIB   Debian's shared libraries (libxenstore.so.4 and friends)
# REF_BIN   Debian's daemons and test-xenstore
# REF_TOOLS Debian's xenstore-* command line tools
# REF_STUBS the LD_PRELOAD shim for the reference daemons
# SOCKWAIT  helper that waits for a Unix socket to accept

REF_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$REF_SCRIPTS/../.." && pwd)

ref_set_dir() {
    REF_DIR=$1
    REF_ROOT=$REF_DIR/root
    REF_LIB=$REF_ROOT/usr/lib/x86_64-linux-gnu
    REF_BIN=$REF_ROOT/usr/lib/xen-4.17/bin
    REF_TOOLS=$REF_ROOT/usr/bin
    REF_STUBS=$REF_DIR/xenstubs.so
    SOCKWAIT=$REF_DIR/sockwait
}
ref_set_dir "${XS_REFERENCE_DIR:-$REPO_ROOT/.reference}"

ref_die() { echo "error: $*" >&2; exit 1; }
