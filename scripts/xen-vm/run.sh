#!/bin/bash
# Real Xen in the test suite: boots Debian's Xen 4.17 under QEMU's software emulation (TCG), with
# a PV dom0 and two PV guests created by xl, once with dom0 on Debian's C xenstored and once on
# ours, and runs inside, once with Debian's libxenstore and once with ours:
#   dom0   (the daemon of the boot, started by Xen's launch-xenstore): the conformance scenario
#          (Debian's xenstore-* tools, test-xenstore, xsprobe) and the C tests, over the socket
#          and over /dev/xen/xenbus; the toolstack (xen-init-dom0, xenconsoled, xl) on ours, and
#          xl create/list/destroy on each library with the XenStore nodes they leave compared;
#   hosts  two guests, xvm-a and xvm-b, created at once, each (unprivileged, through its
#          kernel's /dev/xen/xenbus) playing the guest scenario (relative paths, its home,
#          EACCES, nodes dom0 granted it, watches, transactions) and the C tests that make
#          sense for a guest (domu: threads, EAGAIN, xs_fileno...); dom0 watches
#          @introduceDomain and @releaseDomain, reads their consoles with xl console, shuts one
#          down and destroys the other, and checks that nothing of theirs is left.
# Then compares the transcripts library against library within each boot, and daemon against
# daemon across the boots, line by line, after normalising what may vary (domids, uuids,
# timings): any difference not listed in known-differences.txt fails the run. Ends with one
# line per boot and place, one per boot, one across the boots (`... N of N comparisons
# matched`) and `xen-vm: PASS` or `xen-vm: FAIL (...)`.
#
#   scripts/xen-vm/run.sh [--no-build]
#
# What it downloads (Debian's packages, apt-get download, unpacked with dpkg -x, never
# installed) is cached in $XEN_VM_CACHE (default <repo>/.xen-vm): a second run downloads
# nothing. qemu-system-x86 (10.0, bookworm-backports) is the one package installed, if missing.
# Work files (images, the console log, what ran inside) go to $XEN_VM_WORK (default
# <repo>/build/xen-vm); the console logs are console-DAEMON.log there, the outputs out/DAEMON/.
#
# Environment:
#   XEN_VM_DAEMONS     the daemons dom0 runs, one boot each, of: c ours (default both; with one,
#                      nothing is compared across boots)
#   XEN_VM_OURS_DAEMON a xenstored to run as "ours" instead of the one built here (it must
#                      take the C daemon's command line; a script works if the image has its
#                      interpreter, busybox's sh)
#   XEN_VM_OURS_LIB    a libxenstore.so.4 to test as "ours" instead of the one built here
#   XEN_VM_TIMEOUT     seconds before QEMU is killed, per boot (default 800: a boot takes
#                      about 250 s, 530-560 s with a busy loop beside it on the host)
#   XEN_VM_SMP         virtual CPUs of the emulated machine (default 2)
#   XEN_VM_PARTS       what to run, of: socket xenbus toolstack hosts (default all four; a part
#                      left out makes its comparisons missing, so the run fails)
#   XEN_VM_LOCK        a file held (flock) during each boot, so that the boots of several
#                      checkouts on one machine take turns
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/scripts/reference/common.sh"
cache=${XEN_VM_CACHE:-$root/.xen-vm}
work=${XEN_VM_WORK:-$root/build/xen-vm}
vm_timeout=${XEN_VM_TIMEOUT:-800}
daemons=${XEN_VM_DAEMONS:-c ours}
for d in $daemons; do
    case $d in c | ours) ;; *) echo "XEN_VM_DAEMONS: no daemon $d (c, ours)" >&2; exit 64 ;; esac
done
build=1
while [ $# -gt 0 ]; do
    case $1 in
    --no-build) build= ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 64 ;;
    esac
    shift
done

say() { printf '\n=== %s\n' "$*"; }
die() { echo "xen-vm: FAIL ($*)"; exit 1; }
start=$SECONDS

# ---------------------------------------------------------------- host packages
need=()
for p in cmake pkg-config gcc make; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } ||
        die "cannot install ${need[*]}"
fi
# QEMU 10 from bookworm-backports: the one that boots Xen 4.17 here under TCG.
if ! command -v qemu-system-x86_64 >/dev/null; then
    say "installing qemu-system-x86 from bookworm-backports"
    list=/etc/apt/sources.list.d/bookworm-backports.list
    grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ ||
        echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$list"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 >/dev/null || die "cannot install qemu-system-x86"
fi

# ---------------------------------------------------------------- Debian's packages, cached
say "Debian's packages (cache: $cache)"
"$REF_SCRIPTS/fetch.sh" || die "cannot fetch the reference Xen 4.17 packages"
stamp=$cache/.fetched
if [ ! -s "$stamp" ] || [ ! -d "$cache/root/boot" ]; then
    # The kernel Debian 12 ships now: the package linux-image-amd64 points at.
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
    if [ -z "$kpkg" ]; then
        apt-get update -qq
        kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
    fi
    [ -n "$kpkg" ] || die "cannot tell which linux-image package Debian ships"
    pkgs=(xen-hypervisor-4.17-amd64 "$kpkg-unsigned" busybox-static)
    rm -rf "$cache/debs" "$cache/root"
    mkdir -p "$cache/debs"
    (cd "$cache/debs" && apt-get download "${pkgs[@]}" >download.log 2>&1) ||
        { apt-get update -qq && (cd "$cache/debs" && apt-get download "${pkgs[@]}" >>download.log 2>&1); } ||
        { cat "$cache/debs/download.log"; die "apt-get download ${pkgs[*]} failed"; }
    mkdir -p "$cache/root.tmp"
    for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root.tmp" || die "cannot unpack $deb"; done
    mv "$cache/root.tmp" "$cache/root"
    echo "${pkgs[*]}" >"$stamp"
fi
kver=$(ls "$cache/root/lib/modules" | head -n 1)
vmlinuz=$cache/root/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no kernel in $cache/root/boot"
[ -x "$cache/root/bin/busybox" ] || die "no busybox in $cache/root/bin"
echo "cached: $(cat "$stamp") (kernel $kver)"

# ---------------------------------------------------------------- what runs inside
mkdir -p "$work"
ours_prefix=$work/prefix
if [ -n "$build" ]; then
    say "building our library and the C tests with each library"
    (cd "$root" && cargo build --release --lib) || die "cargo build failed"
    rm -rf "$ours_prefix"
    XS_NO_BUILD=1 "$root/scripts/install.sh" "$ours_prefix" >/dev/null || die "install.sh failed"
    if [ -n "${XEN_VM_OURS_LIB:-}" ]; then
        cp -L "$XEN_VM_OURS_LIB" "$(readlink -f "$ours_prefix/lib/libxenstore.so.4")" ||
            die "cannot use $XEN_VM_OURS_LIB"
        echo "testing $XEN_VM_OURS_LIB as our library"
    fi
    for lib in reference ours; do
        args=(-S "$root/c-tests" -B "$work/ct-$lib" -DXST_TRANSCRIPT_DIR=/tmp/xst-transcripts
            -DXENSTORE_TOOLCORE="$REF_LIB/libxentoolcore.so.1")
        if [ $lib = reference ]; then
            args+=(-DXENSTORE_REFERENCE_ROOT="$REF_ROOT")
        else
            args+=(-DXENSTORE_PC_PATH="$ours_prefix/lib/pkgconfig")
        fi
        { cmake "${args[@]}" && cmake --build "$work/ct-$lib" -j 2; } >"$work/ct-$lib.log" 2>&1 ||
            { tail -n 30 "$work/ct-$lib.log"; die "the C tests do not build with the $lib library"; }
    done
    # Debian's tools under their usual names, as conformance.sh lays them out.
    rm -rf "$work/bin"
    mkdir -p "$work/bin"
    for t in "$REF_TOOLS"/xenstore "$REF_TOOLS"/xenstore-*; do
        [ "$(basename "$t")" = xenstore-control ] || ln -s "$t" "$work/bin/"
    done
    ln -s "$REF_BIN/xenstore-control" "$REF_BIN/test-xenstore" "$work/bin/"
    # dom0's probe and the guests' run at once: the guests' works under a root of its own, so
    # that a guest's watches never see what dom0's probe does (which depends on timing).
    for probe in xsprobe:/probe xsprobe-guest:/probe-guest; do
        gcc -O2 -Wall -Wextra -Werror -I"$REF_ROOT/usr/include" -DPROBE_ROOT="\"${probe#*:}\"" \
            -o "$work/bin/${probe%%:*}" "$root/tests/reference/xsprobe.c" -L"$REF_LIB" \
            -Wl,-rpath-link,"$REF_LIB" -lxenstore || die "cannot build ${probe%%:*}"
    done
fi
ours_lib=$ours_prefix/lib
[ -e "$ours_lib/libxenstore.so.4" ] || die "no $ours_lib/libxenstore.so.4 (run without --no-build)"
ours_daemon=
if [[ " $daemons " == *" ours "* ]]; then
    if [ -n "${XEN_VM_OURS_DAEMON:-}" ]; then
        ours_daemon=$XEN_VM_OURS_DAEMON
        echo "testing $ours_daemon as our daemon"
    else
        if [ -n "$build" ]; then
            say "building our daemon"
            (cd "$root" && cargo build --release --bin xenstored) || die "cargo build of xenstored failed"
        fi
        target=${CARGO_TARGET_DIR:-$root/target}
        case "$target" in /*) ;; *) target=$root/$target ;; esac
        ours_daemon=$target/release/xenstored
    fi
    [ -x "$ours_daemon" ] || die "no daemon $ours_daemon"
fi

# ---------------------------------------------------------------- images
say "images"
img=$work/img
rm -rf "$img"
mkdir -p "$img"

# copy_at DEST PATH...: each PATH into DEST at the same absolute path (so the C tests find the
# library directory they were built against, and the tools Debian's, where the host has them).
copy_at() {
    local dest=$1 p
    shift
    for p in "$@"; do
        mkdir -p "$dest$(dirname "$p")"
        cp -a "$p" "$dest$p"
    done
}
# host_libs DIR [FILE...]: the shared libraries the ELF files under DIR (or the FILEs) need
# from the host (glibc and the like), copied into DIR at their host paths.
host_libs() {
    local dir=$1 f
    shift
    {
        if [ $# -gt 0 ]; then printf '%s\n' "$@"; else find "$dir" -type f \( -perm -u+x -o -name '*.so*' \); fi |
            while read -r f; do
                [ "$(head -c 4 "$f")" = $'\x7fELF' ] || continue
                LD_LIBRARY_PATH=$ours_lib:$REF_LIB ldd "$f" 2>/dev/null | grep -o '/[^ ]*'
            done
        # glibc loads it for pthread_cancel and unwinding.
        echo /lib/x86_64-linux-gnu/libgcc_s.so.1
    } | grep -v -e "^$REF_ROOT" -e "^$ours_prefix" | sort -u | while read -r f; do
        [ -e "$dir$f" ] || { mkdir -p "$dir$(dirname "$f")" && cp -L "$f" "$dir$f"; }
    done
}

# What both places hold: busybox, bash, coreutils' timeout, Debian's Xen userspace (at its
# unpacked path), our library, the C tests built with each library, the scripts.
stage_common() {
    local d=$1
    mkdir -p "$d"/{bin,dev,proc,sys,tmp,run,etc,xvm,out,lib64}
    cp "$cache/root/bin/busybox" "$d/bin/busybox"
    cp /bin/bash "$d/bin/bash"
    cp /usr/bin/timeout "$d/bin/timeout"
    copy_at "$d" "$REF_ROOT"
    rm -rf "$d$REF_ROOT/usr/include" "$d$REF_ROOT/usr/share" "$d$REF_ROOT"/usr/lib/*/*.a
    copy_at "$d" "$ours_prefix/lib" "$work/bin"
    local lib t
    for lib in reference ours; do
        for t in "$work/ct-$lib"/*; do
            [ -f "$t" ] && [ -x "$t" ] && copy_at "$d" "$t"
        done
    done
    cp "$root/tests/reference/steps.sh" "$root/tests/reference/scenario.sh" "$here/lib.sh" \
        "$here/payload.sh" "$here/dom0.sh" "$here/guest.sh" "$here/scenario-guest.sh" "$d/xvm/"
    cp "$here/init" "$d/init"
    cat >"$d/xvm/env" <<EOF
REF_ROOT=$REF_ROOT
REF_LIB=$REF_LIB
REF_BIN=$REF_BIN
OURS_LIB=$ours_lib
TOOLS=$work/bin
CT_reference=$work/ct-reference
CT_ours=$work/ct-ours
PARTS="${XEN_VM_PARTS:-socket xenbus toolstack hosts}"
EOF
}

# pack DIR OUT: DIR as a gzipped initramfs.
pack() {
    (cd "$1" && find . | "$cache/root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$2" ||
        die "cannot pack $2"
}

# The guest: everything above, its own init.
stage_common "$img/domu"
host_libs "$img/domu"
cp -a "$img/domu" "$img/dom0"
echo guest >"$img/domu/xvm/role"
pack "$img/domu" "$img/domu.cpio.gz"

# dom0: the same plus Xen's toolstack at its usual paths (its programs are all in Debian's tree
# above), our daemon and util-linux's prlimit (for launch-xenstore) with the host libraries
# they need, the xen modules, the guest's kernel and initramfs. One image for both boots: the
# kernel's command line names the daemon.
echo dom0 >"$img/dom0/xvm/role"
cp /usr/bin/prlimit "$img/dom0/bin/prlimit" || die "no prlimit on the host (util-linux)"
extra=("$img/dom0/bin/prlimit")
if [ -n "$ours_daemon" ]; then
    cp -L "$ours_daemon" "$img/dom0/xvm/xenstored-ours" || die "cannot stage $ours_daemon"
    chmod +x "$img/dom0/xvm/xenstored-ours"
    extra+=("$img/dom0/xvm/xenstored-ours")
fi
host_libs "$img/dom0" "${extra[@]}"
mkdir -p "$img/dom0/usr/lib" "$img/dom0/lib/modules" "$img/dom0/boot"
ln -s "$REF_ROOT/usr/lib/xen-4.17" "$img/dom0/usr/lib/xen-4.17"
ln -s "$REF_ROOT/etc/xen" "$img/dom0/etc/xen"
for m in xen-evtchn xen-privcmd xen-gntdev xenfs; do
    f=$(find "$cache/root/lib/modules/$kver" -name "$m.ko*" | head -n 1)
    [ -n "$f" ] || die "no module $m in $kver"
    cp "$f" "$img/dom0/lib/modules/"
done
cp "$vmlinuz" "$img/dom0/boot/vmlinuz"
cp "$img/domu.cpio.gz" "$img/dom0/boot/domu.cpio.gz"
pack "$img/dom0" "$img/dom0.cpio.gz"
gunzip -c "$cache/root/boot/xen-4.17-amd64.gz" >"$img/xen.elf" || die "cannot unpack Xen"
echo "dom0 initramfs $(du -h "$img/dom0.cpio.gz" | cut -f1), guest's $(du -h "$img/domu.cpio.gz" | cut -f1)"

# ---------------------------------------------------------------- boots
# Under emulation every page-table switch flushes QEMU's TLB: Xen's mitigations against
# speculative attacks, which add such switches to every system call of a PV guest, are turned
# off (there is no other tenant to protect in this throwaway machine).
xen_speed="xpti=false pv-l1tf=false spec-ctrl=no"
lock=()
[ -z "${XEN_VM_LOCK:-}" ] || lock=(flock "$XEN_VM_LOCK")
. "$here/payload.sh"
rm -rf "$work/out"
# boot DAEMON: one boot with dom0 on DAEMON's xenstored; results in out/DAEMON, or a line in
# out/DAEMON/boot-failed.
boot() {
    local daemon=$1 log=$work/console-$1.log out=$work/out/$1 boot_start=$SECONDS qrc
    mkdir -p "$out"
    say "booting Xen 4.17 under QEMU (TCG), dom0 on the $daemon xenstored, at most $vm_timeout s"
    # AVX/XSAVE off: with them, processes in the guest crash at random under TCG.
    "${lock[@]}" timeout -k 5 "$vm_timeout" qemu-system-x86_64 -machine q35 -accel tcg \
        -cpu max,-avx,-avx2,-xsave -smp "${XEN_VM_SMP:-2}" -m 1280 -nographic -no-reboot \
        -monitor none -serial "file:$log" -kernel "$img/xen.elf" \
        -append "console=com1 com1=115200 sync_console dom0_mem=640M,max:640M loglvl=warning guest_loglvl=warning $xen_speed" \
        -initrd "$img/dom0/boot/vmlinuz console=hvc0 loglevel=3 mitigations=off rdinit=/init xvm_daemon=$daemon,$img/dom0.cpio.gz" \
        </dev/null >"$work/qemu-$daemon.log" 2>&1
    qrc=$?
    echo "QEMU ran $((SECONDS - boot_start)) s (exit $qrc)"
    grep -a '^XVM:' "$log" | tr -d '\r'
    # What hung, for the summary: a step that timed out, or the machine's time running out
    # (with the last thing it was seen doing).
    grep -a '^XVM: .*timed out: ' "$log" | tr -d '\r' | sed 's/^XVM: //' >"$out/boot-notes"
    if [ $qrc -eq 124 ]; then
        echo "QEMU killed after $vm_timeout s"
        echo "QEMU killed after $vm_timeout s; last seen: $(grep -a '^XVM:' "$log" | tr -d '\r' | tail -n 1)" >>"$out/boot-notes"
    fi
    if ! grep -aq '^XVM: init reached' "$log"; then
        tail -n 30 "$log"
        echo "dom0 did not reach its init" >"$out/boot-failed"
        return
    fi
    receive_payloads "$log" "$out"
    echo "$RECEIVED payload(s) of results received"
    [ "$RECEIVED" -gt 0 ] || { tail -n 30 "$log"; echo "dom0 sent back no results" >"$out/boot-failed"; }
}
for d in $daemons; do boot "$d"; done

XEN_VM_DAEMONS=$daemons exec "$here/compare.sh" "$work/out" "$((SECONDS - start))"
