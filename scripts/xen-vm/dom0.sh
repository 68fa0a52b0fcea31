# dom0's part of scripts/xen-vm/run.sh (run by /init, with bash). Debian's C xenstored serves;
# the toolstack runs on our library; the scenario and the C tests run with each library over
# the socket and over /dev/xen/xenbus; a guest created by xl runs guest.sh, whose results come
# back through its console log. Results under /out, sent back to the host part by part.
. /xvm/lib.sh
. /xvm/scenario.sh
# The C tests for dom0: all but the embedded store's and the guest's.
# perms and domains are left out: they give ownership to, and introduce, domains that do not
# exist, which a daemon on a real hypervisor refuses (ENOENT, EINVAL) whatever the library.
DOM0_CTESTS="basic transactions watches libhelpers badinput threads fork features linkage restrict"
# Over the xenbus device the kernel stands between library and daemon. It answers some
# requests itself (unwatching a watch never set, or setting one twice, is "OK") and refuses a
# request too long for its buffer, after which the C library closes its connection
# (known-differences.txt). basic and watches expect the daemon's answers, so over the device
# their transcripts are compared but their checks not judged. badinput is left out: ending
# transaction 0 through the device never returns, with either library.
XENBUS_CTESTS="basic transactions watches libhelpers threads fork features linkage restrict"
XENBUS_COMPARE_ONLY="basic watches"
OUT=/out/dom0
mkdir -p "$OUT" /out/guest

progress "dom0: loading the xen modules"
for m in xen-evtchn xen-privcmd xen-gntdev xenfs; do
    insmod "/lib/modules/$m.ko" || progress "dom0: insmod $m failed"
done
mkdir -p /proc/xen
mount -t xenfs xenfs /proc/xen || progress "dom0: cannot mount xenfs"
mkdir -p /var/run/xenstored /var/run/xen /var/lib/xen /var/log/xen/console /var/lib/xenstored \
    /var/lock /usr/lib/x86_64-linux-gnu
# Debian's Xen libraries where Debian installs them, for the toolstack.
for f in "$REF_LIB"/lib*.so*; do
    ln -sf "$f" /usr/lib/x86_64-linux-gnu/
done
# The toolstack runs on our library.
TOOLSTACK_LIBS=$(libpath ours)
SOCKET=/var/run/xenstored/socket

progress "dom0: starting Debian's C xenstored"
"$REF_BIN/xenstored" --pid-file /var/run/xenstored.pid
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || progress "dom0: no xenstored socket"

progress "dom0: xen-init-dom0 and xenconsoled, on our library"
LD_LIBRARY_PATH=$TOOLSTACK_LIBS "$REF_BIN/xen-init-dom0" >"$OUT/xen-init-dom0.txt" 2>&1
echo "exit $?" >>"$OUT/xen-init-dom0.txt"
LD_LIBRARY_PATH=$TOOLSTACK_LIBS "$REF_BIN/xenconsoled" --log=guest --log-dir=/var/log/xen/console \
    --pid-file=/var/run/xenconsoled.pid >"$OUT/xenconsoled.txt" 2>&1

has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- the toolstack
# A transcript line per xl command: what it printed (normalised) and its exit status.
xl_run() {
    echo "\$ xl $*"
    xl "$@" 2>&1 | norm
    echo "[exit ${PIPESTATUS[0]}]"
}
xl() { LD_LIBRARY_PATH=$XL_LIBS "$REF_BIN/xl" "$@"; }
# What changes from one created domain to the next: its domid, its uuid, times, memory use.
norm() {
    sed -E -e "s#/local/domain/$DOMID([/ ]|\$)#/local/domain/<domid>\1#g" \
        -e "s#(backend/[a-z]+)/$DOMID/#\1/<domid>/#g" \
        -e "s#([nrwb])$DOMID([,)])#\1<domid>\2#g" \
        -e "s#(domid|frontend-id) = \"$DOMID\"#\1 = \"<domid>\"#" \
        -e "s#(/libxl|/backend/console)/$DOMID([/ ]|\$)#\1/<domid>\2#g" \
        -e 's#(start_time = )"[0-9.]+"#\1"<time>"#' \
        -e 's#[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}#<uuid>#g' \
        -e "s#^(xvm-guest +)$DOMID +#\1<domid> #" \
        -e 's#^(xvm-guest +<domid> +[0-9]+ +[0-9]+ +[-a-z]+ +)[0-9.]+$#\1<time>#' \
        -e 's#^(Domain-0 +0 +[0-9]+ +[0-9]+ +[-a-z]+ +)[0-9.]+$#\1<time>#'
}
# The guest's XenStore nodes as the toolstack left them.
dump_guest() {
    local p
    for p in "/local/domain/$DOMID" "/vm/$(xenstore-read "/local/domain/$DOMID/vm" | sed 's#^/vm/##')" \
        "/libxl/$DOMID" "/local/domain/0/backend/console/$DOMID"; do
        echo "\$ xenstore-ls -f -p $p" | norm
        xenstore-ls -f -p "$p" 2>&1 | norm
    done
}
export XENSTORED_PATH=$SOCKET
export LD_LIBRARY_PATH=$TOOLSTACK_LIBS
cat >/xvm/guest.cfg <<CFG
name = "xvm-guest"
type = "pv"
kernel = "/boot/vmlinuz"
ramdisk = "/boot/domu.cpio.gz"
cmdline = "console=hvc0 loglevel=1 rdinit=/init"
memory = 256
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
CFG

# Each library creates a paused guest, lists it and destroys it: the nodes it leaves must be
# the same. The C xenstored traces this traffic (a real domain creation, for bench/).
xenstore-control logfile /out/dom0/xenstored-trace.txt >/dev/null 2>&1
for lib in debian ours; do
    has_part toolstack || break
    progress "dom0: xl create, list, destroy on the $lib library"
    XL_LIBS=$(libpath "$lib")
    DOMID=none
    {
        xl_run create -p /xvm/guest.cfg
        DOMID=$(xl domid xvm-guest 2>/dev/null)
        xl_run list
        dump_guest
        xl_run destroy xvm-guest
        xl_run list
    } >"$OUT/toolstack-$lib.txt" 2>&1
done
xenstore-control log off >/dev/null 2>&1

# The guest proper, on our library: created paused, given nodes to reach, unpaused. It runs
# guest.sh while dom0 runs its own tests below, and prints its results on its console.
XL_LIBS=$TOOLSTACK_LIBS
GUEST_LOG=/var/log/xen/console/guest-xvm-guest.log
if has_part guest; then
    progress "dom0: a guest on our library"
    xenstore-watch @releaseDomain >"$OUT/release-watch.txt" 2>&1 &
    watch_pid=$!
    {
        xl_run create -p /xvm/guest.cfg
        DOMID=$(xl domid xvm-guest 2>/dev/null)
        # What the guest may and may not reach outside its home.
        xenstore-write /xvm/granted/rw from-dom0 /xvm/granted/ro read-only /xvm/granted/none secret
        xenstore-chmod /xvm/granted n0 "r$DOMID"
        xenstore-chmod /xvm/granted/rw n0 "b$DOMID"
        xenstore-chmod /xvm/granted/ro n0 "r$DOMID"
        xenstore-chmod /xvm/granted/none n0
        # libxl leaves a guest's home dom0's (the guest may write only data/ and a few
        # others): hand it over, so that the guest's tools and test-xenstore, which work in
        # the home itself, can.
        xenstore-chmod "/local/domain/$DOMID" "n$DOMID"
        xl_run unpause xvm-guest
        xl_run list
    } >"$OUT/toolstack-guest.txt" 2>&1
    progress "dom0: guest $DOMID running"
fi

# ---------------------------------------------------------------- library against library
# The guest changes its nodes meanwhile: dom0's listing of the whole store leaves out the
# guest's home, what the toolstack made for it and what dom0 granted it.
eval "scenario_$(declare -f root_listing)"
root_listing() {
    scenario_root_listing | awk '
        # xenstore-ls indents one space per level; a skipped node goes with its subtree.
        { match($0, /^ */); depth = RLENGTH; name = substr($0, depth + 1); sub(/ = .*/, "", name) }
        skip && depth > skip_depth { next }
        { skip = 0 }
        depth == 0 { top = name }
        (depth == 0 && (name == "vm" || name == "libxl" || name == "xvm")) ||
        (depth == 2 && top == "local" && name != "0") ||
        (depth == 3 && top == "local" && name == "backend") { skip = 1; skip_depth = depth; next }
        { print }'
}
for transport in socket xenbus; do
    has_part $transport || continue
    case $transport in
    socket)
        export XENSTORED_PATH=$SOCKET
        tests=$DOM0_CTESTS
        ;;
    xenbus)
        export XENSTORED_PATH=/dev/xen/xenbus XS_SCENARIO_NO_PROBE=1
        tests=$XENBUS_CTESTS
        ;;
    esac
    for lib in debian ours; do
        progress "dom0: scenario and C tests, $lib library, $transport"
        # Each run starts from the same store: what an earlier run left is removed.
        LD_LIBRARY_PATH=$REF_LIB xenstore-rm /conformance /probe /ctest >/dev/null 2>&1
        play scenario "$lib" "$OUT/$transport/scenario-$lib.txt"
        ctests "$lib" "$OUT/$transport/ctest-$lib" $tests
        [ $transport = socket ] || echo "$XENBUS_COMPARE_ONLY" >"$OUT/$transport/ctest-$lib/compare-only"
        send_back "dom0/$transport/scenario-$lib.txt" "dom0/$transport/ctest-$lib"
    done
done
export XENSTORED_PATH=$SOCKET
unset XS_SCENARIO_NO_PROBE

# ---------------------------------------------------------------- the guest's results
if has_part guest; then
    progress "dom0: waiting for the guest's results"
    for _ in $(seq 900); do
        grep -aq '^XVM-PAYLOAD-END' "$GUEST_LOG" 2>/dev/null && break
        xl domid xvm-guest >/dev/null 2>&1 || break
        sleep 0.5
    done
    {
        xl_run list
        xl_run shutdown -w xvm-guest
        xl_run list
    } >>"$OUT/toolstack-guest.txt" 2>&1
    sleep 1
    kill "$watch_pid" 2>/dev/null
    # The guest's progress lines, then its results unpacked next to dom0's.
    tr -d '\r' <"$GUEST_LOG" | grep -a '^XVM: ' | sed 's/^XVM: /XVM: guest| /' >/dev/console
    cp "$GUEST_LOG" /out/guest/console.log
    receive_payloads "$GUEST_LOG" /out
    if [ "$RECEIVED" -gt 0 ]; then
        progress "dom0: guest results received"
    else
        progress "dom0: no results from the guest"
    fi
fi

progress "dom0: sending the rest of the results"
send_back $(cd /out && ls -d dom0/*.txt guest 2>/dev/null)
