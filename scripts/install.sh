#!/bin/sh
# Install libxenstore for C programs:
#
#   scripts/install.sh PREFIX
#
# builds the library with `cargo build --release --lib` (a no-op when it is up to date) and
# installs, the way Debian's libxenstore4 + libxen-dev lay them out:
#   PREFIX/lib/libxenstore.so.<crate version>   the library (SONAME libxenstore.so.4)
#   PREFIX/lib/libxenstore.so.4, libxenstore.so  links to it
#   PREFIX/include/xenstore.h, xenstore_lib.h, xenstore_embedded.h, xen/io/xs_wire.h,
#     xenstore-compat/xs.h, xenstore-compat/xs_lib.h, and xs.h, xs_lib.h linking to those
#   PREFIX/lib/pkgconfig/xenstore.pc
# Then: PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs xenstore
# debian/rules lays out the Debian packages with it (docs/packaging.md).
#
# The library is cargo's cdylib as it is: its exports carry the upstream symbol versions
# (VERS_4.0, VERS_4.1, VERS_4.2; see src/ffi/exports.rs), which is checked before installing.
#
# Environment: LIBDIR (default PREFIX/lib), INCLUDEDIR (default PREFIX/include), DESTDIR
# (staging root prepended to every installed path, not to the paths written in xenstore.pc),
# CARGO_TARGET_DIR (where cargo builds), CC (default cc), XS_NO_BUILD=1 (use what is already
# built).
set -eu

usage() { echo "usage: $0 PREFIX   (env: LIBDIR INCLUDEDIR DESTDIR CARGO_TARGET_DIR XS_NO_BUILD)" >&2; exit 2; }
[ $# -eq 1 ] || usage
case "$1" in -h|--help) usage ;; /*) ;; *) echo "$0: PREFIX must be an absolute path" >&2; exit 2 ;; esac

prefix=${1%/}
libdir=${LIBDIR:-$prefix/lib}
includedir=${INCLUDEDIR:-$prefix/include}
destdir=${DESTDIR:-}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "$0: no version in Cargo.toml" >&2; exit 1; }

[ "${XS_NO_BUILD:-0}" = 1 ] || (cd "$root" && cargo build --release --lib)
built=$target/release/libxenstore.so
[ -f "$built" ] || { echo "$0: $built is missing (build failed, or XS_NO_BUILD=1 too early)" >&2; exit 1; }

# A library without the right SONAME would install but break every program linked to it.
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$built" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    if [ "$soname" != libxenstore.so.4 ]; then
        echo "$0: $built has SONAME '$soname', expected libxenstore.so.4" >&2
        exit 1
    fi
    if ! readelf --dyn-syms -W "$built" | grep -q ' xs_open@@*VERS_4\.0$'; then
        echo "$0: the library has no xs_open@VERS_4.0" >&2
        exit 1
    fi
fi

real=libxenstore.so.$version
install -d "$destdir$libdir" "$destdir$libdir/pkgconfig" \
    "$destdir$includedir/xen/io" "$destdir$includedir/xenstore-compat"
install -m 0755 "$built" "$destdir$libdir/$real"
ln -sfn "$real" "$destdir$libdir/libxenstore.so.4"
ln -sfn libxenstore.so.4 "$destdir$libdir/libxenstore.so"

for h in xenstore.h xenstore_lib.h xenstore_embedded.h xen/io/xs_wire.h \
         xenstore-compat/xs.h xenstore-compat/xs_lib.h; do
    install -m 0644 "$root/include/$h" "$destdir$includedir/$h"
done
ln -sfn xenstore-compat/xs.h "$destdir$includedir/xs.h"
ln -sfn xenstore-compat/xs_lib.h "$destdir$includedir/xs_lib.h"

# Paths under the prefix are written relative to it, so the tree can be moved as a whole.
pc_libdir=$libdir
case "$libdir" in "$prefix"/*) pc_libdir='${exec_prefix}'${libdir#"$prefix"} ;; esac
pc_includedir=$includedir
case "$includedir" in "$prefix"/*) pc_includedir='${prefix}'${includedir#"$prefix"} ;; esac
sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$pc_libdir|g" \
    -e "s|@INCLUDEDIR@|$pc_includedir|g" -e "s|@VERSION@|$version|g" \
    "$root/pkgconfig/xenstore.pc.in" > "$destdir$libdir/pkgconfig/xenstore.pc"
chmod 0644 "$destdir$libdir/pkgconfig/xenstore.pc"

echo "installed libxenstore $version into $destdir$prefix:"
echo "  $libdir/$real (+ libxenstore.so.4, libxenstore.so)"
echo "  $includedir/{xenstore.h,xenstore_lib.h,xenstore_embedded.h,xs.h,xs_lib.h,xen/io/xs_wire.h,xenstore-compat/}"
echo "  $libdir/pkgconfig/xenstore.pc"
