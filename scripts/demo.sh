#!/bin/sh
# The quick start: a toolstack and a guest doing the xenbus handshake of a network device,
# with no daemon and no hypervisor (demo/toolstack_demo.c).
#
#   scripts/demo.sh
#
# Builds the library (cargo build --release --lib), compiles the demo with the system's C
# compiler against include/ and the freshly built libxenstore.so.4, and runs it with
# XENSTORE_EMBEDDED=1: its xs_open() handle is domain 0 on a store inside the process, and
# xs_embedded_open_domain(1) gives the guest a handle whose messages cross a real ring page.
#
# Environment: CC (default cc, else gcc), CARGO_TARGET_DIR (where cargo builds).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || [ -n "${CC:-}" ] || cc=gcc

command -v cargo >/dev/null 2>&1 || { echo "$0: cargo not found (install a Rust toolchain)" >&2; exit 1; }
command -v "$cc" >/dev/null 2>&1 || { echo "$0: no C compiler '$cc' (apt-get install gcc)" >&2; exit 1; }

echo "== building libxenstore (cargo build --release --lib)"
(cd "$root" && cargo build --release --lib)

lib=$target/release
bin=$target/demo/toolstack_demo
mkdir -p "$target/demo"
echo "== compiling demo/toolstack_demo.c"
"$cc" -O2 -Wall -Wextra -I "$root/include" -o "$bin" "$root/demo/toolstack_demo.c" \
    -L "$lib" -Wl,-rpath,"$lib" -lxenstore

echo "== running it with XENSTORE_EMBEDDED=1 (no daemon, no Xen)"
echo
XENSTORE_EMBEDDED=1 LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$bin"
