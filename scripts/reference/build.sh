#!/bin/bash
# Build the harness helpers into the reference dir:
#   sockwait     waits for a Unix socket to accept (needs only gcc)
#   xenstubs.so  LD_PRELOAD shim for the reference daemons (needs the Debian
#                headers, so fetch.sh runs first)
# Each is rebuilt only when its source is newer.
# Usage: build.sh [--sockwait-only] [DIR]   (default <repo>/.reference)
set -euo pipefail
. "$(dirname "$0")/common.sh"
only_sockwait=
if [ "${1:-}" = --sockwait-only ]; then only_sockwait=1; shift; fi
[ $# -ge 1 ] && ref_set_dir "$(realpath -m "$1")"

command -v gcc >/dev/null || ref_die "gcc not found (apt-get install gcc)"
mkdir -p "$REF_DIR"

# compile SRC OUT ARGS...: atomic, so parallel callers never see half a file.
compile() {
    local src=$1 out=$2; shift 2
    [ -f "$out" ] && [ "$out" -nt "$src" ] && return 0
    gcc -O2 -Wall -Wextra -Werror -o "$out.$$" "$src" "$@"
    mv -f "$out.$$" "$out"
}

compile "$REF_SCRIPTS/sockwait.c" "$SOCKWAIT"
[ -n "$only_sockwait" ] && exit 0

"$REF_SCRIPTS/fetch.sh" "$REF_DIR"
compile "$REF_SCRIPTS/xenstubs.c" "$REF_STUBS" -shared -fPIC -I"$REF_ROOT/usr/include" -ldl
