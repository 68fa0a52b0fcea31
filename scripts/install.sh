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
#
# Symbol versions: rustc hands the linker its own version script for a cdylib, which puts
# every exported symbol in the base version, so the library cargo builds has xs_open rather
# than xs_open@VERS_4.0 (include/libxenstore.map is ignored for symbols). By default the
# installed library is therefore linked again, by cc, from the crate built as a staticlib,
# with include/libxenstore.map as the only version script; it then carries the upstream
# versions (VERS_4.0, VERS_4.1, VERS_4.2), exports nothing but those, and programs linked
# against it need exactly what Debian's libxenstore4 provides.
#
# Environment: LIBDIR (default PREFIX/lib), INCLUDEDIR (default PREFIX/include), DESTDIR
# (staging root prepended to every installed path, not to the paths written in xenstore.pc),
# CARGO_TARGET_DIR (where cargo builds), CC (default cc), XS_NO_BUILD=1 (use what is already
# built), XS_INSTALL_LINK=cdylib (install cargo's cdylib as it is, without symbol versions).
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

link=${XS_INSTALL_LINK:-relink}
case $link in relink|cdylib) ;; *) echo "$0: XS_INSTALL_LINK must be relink or cdylib" >&2; exit 2 ;; esac
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

if [ "$link" = cdylib ]; then
    [ "${XS_NO_BUILD:-0}" = 1 ] || (cd "$root" && cargo build --release --lib)
    built=$target/release/libxenstore.so
else
    # What the Rust standard library needs from the system, as rustc reports it when it builds
    # the staticlib; remembered because cargo prints nothing when the build is fresh.
    native=$target/release/libxenstore.native-libs
    if [ "${XS_NO_BUILD:-0}" != 1 ]; then
        if ! (cd "$root" && cargo rustc --release --lib --crate-type staticlib \
                -- --print native-static-libs) >"$stage/cargo.log" 2>&1; then
            cat "$stage/cargo.log" >&2
            exit 1
        fi
        grep -vi 'native-static-libs\|^note: link against\|^$' "$stage/cargo.log" >&2 || true
        sed -n 's/.*native-static-libs: //p' "$stage/cargo.log" | tail -n 1 > "$stage/native"
        [ -s "$stage/native" ] && cp "$stage/native" "$native"
    fi
    archive=$target/release/libxenstore.a
    [ -f "$archive" ] || { echo "$0: $archive is missing (build failed?)" >&2; exit 1; }
    libs=$(cat "$native" 2>/dev/null || echo "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")
    built=$stage/libxenstore.so
    # shellcheck disable=SC2086
    "${CC:-cc}" -shared -o "$built" \
        -Wl,--whole-archive "$archive" -Wl,--no-whole-archive \
        -Wl,--version-script="$root/include/libxenstore.map" \
        -Wl,-soname,libxenstore.so.4 -Wl,--gc-sections -Wl,-z,relro -Wl,-z,now $libs
fi
[ -f "$built" ] || { echo "$0: $built is missing (build failed, or XS_NO_BUILD=1 too early)" >&2; exit 1; }

# A library without the right SONAME would install but break every program linked to it.
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$built" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    if [ "$soname" != libxenstore.so.4 ]; then
        echo "$0: $built has SONAME '$soname', expected libxenstore.so.4" >&2
        exit 1
    fi
    if [ "$link" = relink ] && ! readelf --dyn-syms -W "$built" | grep -q ' xs_open@@*VERS_4\.0$'; then
        echo "$0: the relinked library has no xs_open@VERS_4.0" >&2
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
