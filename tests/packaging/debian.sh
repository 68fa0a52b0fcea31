#!/usr/bin/env bash
# The Debian packages, installed on this Debian 12 machine as a host operator would:
#
#   1. build them (scripts/build-debs.sh, reusing target/release) and run lintian: no error;
#   2. install Debian's xenstore-utils and libxenstore4 with apt; record what Debian's tools
#      print against Debian's C xenstored (the reference copy, scripts/reference/daemon.sh);
#   3. install ours with apt: libxenstore4 goes, xenstore-utils stays; every tool now loads
#      our library (ldd, and /proc/PID/maps of a running xenstore-watch); Debian's start-up
#      logic (xenstored_start of /etc/init.d/xen, XENSTORED set as in /etc/default/xen)
#      starts our daemon; the tools print the same against both daemons; a program built
#      with the -dev package gets the dependencies our symbols file promises;
#   4. dpkg refuses to remove our library alone while xenstore-utils needs a libxenstore4;
#      apt removes ours and reinstalls Debian's in one step; the tools load Debian's
#      library again and print the same against both daemons.
#
# It installs and removes system packages, so it must run as root, and puts the machine back
# as it found it on the way out, whatever happened: packages it installed are purged, those it
# removed reinstalled at their versions and marked automatic again where they were (the tools
# it needs to build, dpkg-dev, debhelper, help2man, lintian, are installed first and stay, as
# test-all.sh's cmake does). The other stages use Debian's files from .reference/, never the
# system's.
#
# Environment: XS_REFERENCE_DIR (Debian's unpacked packages, default <repo>/.reference),
# CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/reference/common.sh"

die() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "-- $*"; }

[ "$(id -u)" = 0 ] || die "needs root: it installs and removes packages"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || die "written for Debian 12 (bookworm), not ${PRETTY_NAME:-this system}"

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }

need=()
for p in dpkg-dev debhelper help2man lintian fakeroot pkg-config gcc; do
    dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ] || ! apt-cache policy libxenstore4 | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
    step "installing the build tools: ${need[*]}"
    apt_get install "${need[@]}" >/dev/null
fi

libdir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
work=$(mktemp -d /tmp/xs-debian.XXXXXX)
installed() {
    dpkg-query -W -f '${db:Status-Abbrev} ${Package}:${Architecture}=${Version}\n' |
        awk '$1 == "ii" { print $2 }' | sort
}
installed >"$work/before"
apt-mark showauto | sort >"$work/auto-before"

# Put the packages back as they were, stop the daemons, remove the work directory.
restore() {
    local rc=$? missing extra
    set +e
    [ -s "$work/ours.pid" ] && kill "$(cat "$work/ours.pid")" 2>/dev/null
    "$REF_SCRIPTS/daemon.sh" stop "$work/c" >/dev/null 2>&1
    installed >"$work/after"
    mapfile -t missing < <(comm -23 "$work/before" "$work/after")
    if [ ${#missing[@]} -gt 0 ]; then
        echo "restoring: ${missing[*]}"
        apt_get install --allow-downgrades "${missing[@]}" >"$work/restore.log" 2>&1 ||
            { cat "$work/restore.log"; rc=1; }
        installed >"$work/after"
    fi
    mapfile -t extra < <(comm -13 "$work/before" "$work/after" | sed 's/:.*//')
    if [ ${#extra[@]} -gt 0 ]; then
        echo "purging what this test installed: ${extra[*]}"
        dpkg --purge "${extra[@]}" >"$work/restore.log" 2>&1 || { cat "$work/restore.log"; rc=1; }
    fi
    # Packages reinstalled by name are marked as installed by hand: mark them back.
    mapfile -t extra < <(apt-mark showauto | sort | comm -23 "$work/auto-before" -)
    [ ${#extra[@]} -eq 0 ] || apt-mark auto "${extra[@]}" >/dev/null
    installed >"$work/after"
    if ! cmp -s "$work/before" "$work/after"; then
        echo "FAIL: the installed packages differ from before the test:" >&2
        diff "$work/before" "$work/after" >&2
        rc=1
    fi
    rm -rf "$work"
    exit $rc
}
trap restore EXIT

# The package owning the libxenstore.so.4 that PROGRAM loads.
lib_owner() {
    local prog=$1 path real
    path=$(ldd "$prog" | awk '$1 == "libxenstore.so.4" { print $3 }')
    [ -n "$path" ] || die "$prog loads no libxenstore.so.4"
    # /lib is /usr/lib on Debian 12 (merged /usr), and ldd may name either.
    real=$(readlink -f "$path")
    [ "${real%/*}" = "$libdir" ] || die "$prog loads libxenstore.so.4 from $path ($real)"
    dpkg-query -S "$real" | sed 's/:.*//'
}

tools=(xenstore xenstore-read xenstore-write xenstore-ls xenstore-list xenstore-rm
       xenstore-chmod xenstore-exists xenstore-watch)
check_tools_load() {
    local want=$1 t owner
    for t in "${tools[@]}"; do
        owner=$(lib_owner "/usr/bin/$t")
        [ "$owner" = "$want" ] || die "/usr/bin/$t loads the libxenstore.so.4 of $owner, not $want"
    done
    echo "all ${#tools[@]} tools load $(readlink -f "$libdir/libxenstore.so.4") ($want)"
}

# What Debian's tools print against the daemon on SOCKET (a fresh subtree each time).
transcript() {
    local sock=$1
    run() {
        local rc=0
        echo "\$ $*"
        XENSTORED_PATH=$sock "$@" 2>&1 || rc=$?
        echo "exit $rc"
    }
    XENSTORED_PATH=$sock xenstore-rm /pkgtest >/dev/null 2>&1 || true
    run xenstore-write /pkgtest/a one /pkgtest/b two /pkgtest/c/d three
    run xenstore-read /pkgtest/a /pkgtest/b
    run xenstore-read /pkgtest/missing
    run xenstore-exists /pkgtest/c/d
    run xenstore-exists /pkgtest/missing
    run xenstore-list /pkgtest
    run xenstore-ls /pkgtest
    run xenstore-chmod /pkgtest/a n0 r5
    run xenstore-ls -p /pkgtest
    run xenstore rm /pkgtest/b
    run xenstore-list /pkgtest
    run xenstore-watch -n 1 /pkgtest
    run xenstore-rm /pkgtest
    run xenstore-exists /pkgtest
}

# 1. Build and lint.
step "building the packages (scripts/build-debs.sh)"
"$root/scripts/build-debs.sh" "$work/debs" >"$work/build.log" 2>&1 ||
    { tail -n 40 "$work/build.log"; die "scripts/build-debs.sh failed"; }
debs=("$work"/debs/libxenstore4-rs_*.deb "$work"/debs/libxenstore-rs-dev_*.deb
      "$work"/debs/xenstored-rs_*.deb)
for d in "${debs[@]}"; do [ -f "$d" ] || die "no ${d##*/}"; done
step "lintian"
lint_rc=0
lintian --fail-on error --display-info "$work"/debs/*.changes >"$work/lintian.log" 2>&1 || lint_rc=$?
grep -v '^running with root' "$work/lintian.log" || true
[ $lint_rc = 0 ] || die "lintian failed (exit $lint_rc)"
echo "lintian: $(grep -c '^E:' "$work/lintian.log" || true) errors," \
    "$(grep -c '^W:' "$work/lintian.log" || true) warnings"

# 2. Debian's packages, and what their tools print.
step "Debian's xenstore-utils and libxenstore4 (apt)"
apt_get install --no-upgrade xenstore-utils libxenstore4 >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log"; die "apt-get install xenstore-utils libxenstore4 failed"; }
check_tools_load libxenstore4
csock=$("$REF_SCRIPTS/daemon.sh" start cxenstored "$work/c")
transcript "$csock" >"$work/debian-on-c.txt"
cat "$work/debian-on-c.txt"
grep -q '^one$' "$work/debian-on-c.txt" || die "the tools did not work"

# 3. Ours in their place.
step "our packages (apt-get install ./*.deb)"
apt_get install "${debs[@]}" >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log"; die "apt-get install of our packages failed"; }
status() { dpkg-query -W -f '${db:Status-Abbrev}' "$1" 2>/dev/null | cut -c1-2; }
[ "$(status libxenstore4)" != ii ] || die "libxenstore4 is still installed next to ours"
[ "$(status xenstore-utils)" = ii ] || die "xenstore-utils went with libxenstore4"
check_tools_load libxenstore4-rs

# A running tool maps our library (and no other libxenstore).
XENSTORED_PATH=$csock xenstore-watch /pkgtest-maps >/dev/null 2>&1 &
watcher=$!
# The loader maps the library before main; until the exec, the process is this shell, which
# maps none. Wait for it as long as the process runs (it blocks for watch events).
maps=
while [ -z "$maps" ] && kill -0 "$watcher" 2>/dev/null; do
    maps=$(grep -o '/[^ ]*libxenstore[^ ]*' "/proc/$watcher/maps" 2>/dev/null | sort -u) || true
    [ -n "$maps" ] || sleep 0.05
done
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
[ "$maps" = "$libdir/libxenstore.so.$(dpkg-query -W -f '${Version}' libxenstore4-rs)" ] ||
    die "xenstore-watch (pid $watcher) maps '${maps:-no libxenstore}'"
echo "a running xenstore-watch maps $maps"

# Debian's start-up logic, unchanged, picks our daemon from XENSTORED in its default file.
# Run with private paths (socket, pid file, run directory) instead of /run's.
step "our daemon started by xenstored_start of Debian's /etc/init.d/xen"
{
    echo 'log_progress_msg() { :; }'
    echo 'log_failure_msg() { echo "$*" >&2; }'
    sed -n '/^xenstored_start()/,/^}/p' "$REF_ROOT/etc/init.d/xen"
} >"$work/init-functions"
grep -q 'XENSTORED' "$work/init-functions" || die "no xenstored_start in $REF_ROOT/etc/init.d/xen"
# The script protects the daemon from the OOM killer (choom -n -1000), which needs
# CAP_SYS_RESOURCE; containers often lack it, and there the score stays as it is.
if ! choom -n -1000 -- true 2>/dev/null; then
    sed -i 's|/usr/bin/choom -- -n -1000 |/usr/bin/choom -- -n 0 |' "$work/init-functions"
    grep -q 'choom -- -n 0 ' "$work/init-functions" || die "no choom -n -1000 in xenstored_start"
    echo "note: no CAP_SYS_RESOURCE here: choom -n 0 instead of -n -1000"
fi
sed 's|^#XENSTORED=.*|XENSTORED=/usr/sbin/xenstored-rs|' \
    "$REF_ROOT/usr/share/xen-utils-common/default.xen" >"$work/default.xen"
grep -q '^XENSTORED=/usr/sbin/xenstored-rs$' "$work/default.xen" ||
    die "no XENSTORED line to set in Debian's default.xen"
mkdir -p "$work/noroot/bin" "$work/ours"
osock=$work/ours/socket
XENSTORED_PATH=$osock XENSTORED_DIR=$work/ours XENSTORED_PIDFILE=$work/ours.pid \
    ROOT=$work/noroot OXENSTORED=$work/noroot/bin/oxenstored CXENSTORED=$work/noroot/bin/xenstored \
    sh -c '. "$1"; . "$2"; xenstored_start' sh "$work/default.xen" "$work/init-functions" ||
    die "xenstored_start failed"
[ -s "$work/ours.pid" ] || die "no pid file from the daemon"
[ "$(readlink "/proc/$(cat "$work/ours.pid")/exe")" = /usr/sbin/xenstored-rs ] ||
    die "the pid file does not name /usr/sbin/xenstored-rs"
# Written by xenstored_start once the daemon answered (no xen-init-dom0 in ROOT).
[ "$(XENSTORED_PATH=$osock xenstore-read /local/domain/0/name)" = Domain-0 ] ||
    die "xenstored_start's writes are missing"
echo "started: pid $(cat "$work/ours.pid"), /usr/sbin/xenstored-rs, serving $osock"

step "Debian's tools with our library, against both daemons"
transcript "$csock" >"$work/ours-on-c.txt"
transcript "$osock" >"$work/ours-on-ours.txt"
diff -u "$work/debian-on-c.txt" "$work/ours-on-c.txt" || die "our library on the C daemon differs"
diff -u "$work/debian-on-c.txt" "$work/ours-on-ours.txt" || die "our library on our daemon differs"
echo "same transcript as Debian's library on Debian's daemon ($(grep -c '^\$' "$work/debian-on-c.txt") commands)"

step "a program built with libxenstore-rs-dev (pkg-config xenstore)"
cat >"$work/plain.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <xenstore.h>
int main(void)
{
    struct xs_handle *h = xs_open(0);
    unsigned int len;
    char *v;
    if (!h || !xs_write(h, XBT_NULL, "/pkgtest-dev", "built", 5))
        return 1;
    v = xs_read(h, XBT_NULL, "/pkgtest-dev", &len);
    if (!v)
        return 1;
    printf("%s\n", v);
    free(v);
    xs_close(h);
    return 0;
}
EOF
sed 's|^    xs_close(h);|    free(xs_get_quota_names(h, \&len));\n    xs_close(h);|' "$work/plain.c" >"$work/quota.c"
for p in plain quota; do
    # shellcheck disable=SC2046
    gcc -Wall -Werror -o "$work/$p" "$work/$p.c" $(pkg-config --cflags --libs xenstore) ||
        die "cannot build $p.c against the -dev package"
done
[ "$(XENSTORED_PATH=$csock "$work/plain")" = built ] || die "the program built with -dev failed"
# The dependencies a package of each program would get: any libxenstore4 for the interface
# of Xen 4.17, ours for the later calls.
mkdir -p "$work/shl/debian"
printf 'Source: t\n\nPackage: t\nArchitecture: any\n' >"$work/shl/debian/control"
for p in plain quota; do
    # (It warns that the program is not in a package's build directory: it is not.)
    (cd "$work/shl" && dpkg-shlibdeps -O "$work/$p" 2>/dev/null) |
        sed -n 's/^shlibs:Depends=//p' >"$work/$p.deps"
done
if ! grep -q 'libxenstore4 (>= 4.16.0)' "$work/plain.deps" || grep -q libxenstore4-rs "$work/plain.deps"; then
    die "plain program: Depends $(cat "$work/plain.deps")"
fi
if ! grep -q 'libxenstore4 (>= 4.16.0)' "$work/quota.deps" ||
    ! grep -q 'libxenstore4-rs (>= ' "$work/quota.deps"; then
    die "program calling xs_get_quota_names: Depends $(cat "$work/quota.deps")"
fi
echo "Depends: $(cat "$work/plain.deps") | with xs_get_quota_names: $(cat "$work/quota.deps")"

# 4. Back to Debian's library.
step "dpkg refuses to remove our library alone"
if dpkg --remove libxenstore4-rs >"$work/dpkg.log" 2>&1; then
    die "dpkg removed libxenstore4-rs while xenstore-utils needs a libxenstore4"
fi
grep -q xenstore-utils "$work/dpkg.log" || { cat "$work/dpkg.log"; die "dpkg refused for another reason"; }
# dpkg keeps the package (status "ri": removal wanted, still installed); want it again.
[ "$(status libxenstore4-rs | cut -c2)" = i ] || die "libxenstore4-rs is no longer installed"
echo "libxenstore4-rs:$(dpkg --print-architecture) install" | dpkg --set-selections
echo "refused: $(grep -m1 '^ xenstore-utils depends on' "$work/dpkg.log" | sed 's/^ *//')"

step "apt-get remove ours, libxenstore4+ (one step)"
apt_get remove libxenstore4-rs libxenstore-rs-dev xenstored-rs libxenstore4+ >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log"; die "apt could not swap the libraries back"; }
for p in libxenstore4-rs libxenstore-rs-dev xenstored-rs; do
    [ "$(status "$p")" != ii ] || die "$p is still installed"
done
[ "$(status xenstore-utils)" = ii ] || die "xenstore-utils went with our library"
check_tools_load libxenstore4
transcript "$csock" >"$work/debian-again-on-c.txt"
transcript "$osock" >"$work/debian-on-ours.txt"
diff -u "$work/debian-on-c.txt" "$work/debian-again-on-c.txt" || die "Debian's library differs now"
diff -u "$work/debian-on-c.txt" "$work/debian-on-ours.txt" || die "Debian's library on our daemon differs"
echo "Debian's library is back; same transcript on both daemons"
echo "packages: all checks passed"
