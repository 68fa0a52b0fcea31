# dom0's part of scripts/xen-vm/run.sh (run by /init, with bash). The xenstored named on the
# kernel's command line (xvm_daemon=c: Debian's C xenstored; xvm_daemon=ours: ours) serves,
# started by Xen's launch-xenstore; the toolstack runs on our library; the scenario and the C
# tests run with each library over the socket and over /dev/xen/xenbus; two guests created by
# xl at once run guest.sh, whose results come back through their console logs, and are then
# shut down and destroyed (the hosts part). Results under /out, sent back to the host part by
# part.
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
mkdir -p "$OUT"

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

# The daemon, started as Xen's start-up does (xencommons' launch-xenstore, which Debian ships:
# `$XENSTORED --pid-file /var/run/xen/xenstored.pid $XENSTORED_ARGS`, which returns once the
# daemon has forked, then a wait for the pid file). A daemon that does not fork is killed
# after a minute, and everything after fails.
DAEMON=$(sed -n 's/.*\bxvm_daemon=\([a-z]*\).*/\1/p' /proc/cmdline)
case $DAEMON in
c) XENSTORED=$REF_BIN/xenstored ;;
*) XENSTORED=/xvm/xenstored-ours ;;
esac
echo "$DAEMON" >"$OUT/daemon"
progress "dom0: starting the $DAEMON xenstored with launch-xenstore"
mkdir -p /etc/default
echo "XENSTORED=$XENSTORED" >/etc/default/xencommons
timeout 60 /etc/xen/scripts/launch-xenstore >"$OUT/launch-xenstore.txt" 2>&1
echo "exit $?" >>"$OUT/launch-xenstore.txt"
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
    if [ "$1" = list ]; then
        # Its rows by name, after the heading: guests created at once get their domids, which
        # order the rows, in either order.
        xl "$@" 2>&1 | norm | { IFS= read -r heading && printf '%s\n' "$heading"; sort; }
    else
        xl "$@" 2>&1 | norm
    fi
    echo "[exit ${PIPESTATUS[0]}]"
}
# A daemon that never answers, or never tells xl that a domain went, costs a minute a command.
xl() { LD_LIBRARY_PATH=$XL_LIBS timeout 60 "$REF_BIN/xl" "$@"; }
# What changes from one created domain to the next: its domid (DOMID, or each domain of DOMIDS,
# "ID TAG ...", shown as <TAG>), its uuid, times; in `xl list`, times, states and the column
# widths they make.
norm() {
    local args=() id tag
    # shellcheck disable=SC2086 # "ID TAG ..." is split on purpose
    set -- ${DOMIDS:-$DOMID domid}
    while [ $# -ge 2 ]; do
        id=$1 tag=$2
        shift 2
        args+=(-e "s#/local/domain/$id([/ ]|\$)#/local/domain/<$tag>\1#g"
            -e "s#(backend/[a-z]+)/$id/#\1/<$tag>/#g"
            -e "s#([nrwb])$id([,)])#\1<$tag>\2#g"
            -e "s#(domid|frontend-id) = \"$id\"#\1 = \"<$tag>\"#"
            -e "s#(/libxl|/backend/console)/$id([/ ]|\$)#\1/<$tag>\2#g"
            -e "s#^([-a-z0-9]+ +)$id +#\1<$tag> #"
            -e "s#([Dd]omain )$id( |,|\$)#\1<$tag>\2#g")
    done
    sed -E "${args[@]}" \
        -e 's#(start_time = )"[0-9.]+"#\1"<time>"#' \
        -e 's#(ring-ref = )"[0-9]+"#\1"<frame>"#' \
        -e 's#[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}#<uuid>#g' \
        -e 's#^([-a-z0-9]+ +<[-a-z]+> +[0-9]+ +[0-9]+ +)[-a-z]+ +[0-9.]+$#\1<state> <time>#' \
        -e 's#^(Domain-0 +0 +[0-9]+ +[0-9]+ +[-a-z]+ +)[0-9.]+$#\1<time>#' \
        -e '/^(Name +ID|Domain-0 +0|[-a-z0-9]+ +<[-a-z]+>) /s/[[:space:]]+/ /g'
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
# guest_cfg NAME MEMORY: the configuration of a PV guest booting the guest's image.
guest_cfg() {
    cat >"/xvm/$1.cfg" <<CFG
name = "$1"
type = "pv"
kernel = "/boot/vmlinuz"
ramdisk = "/boot/domu.cpio.gz"
cmdline = "console=hvc0 loglevel=1 rdinit=/init"
memory = $2
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
CFG
}
guest_cfg xvm-guest 256

# Each library creates a paused guest, lists it and destroys it: the nodes it leaves must be
# the same. The C xenstored traces this traffic (a real domain creation, for bench/).
xenstore-control logfile /out/dom0/xenstored-trace.txt >/dev/null 2>&1
for lib in debian ours; do
    has_part toolstack || break
    progress "dom0: xl create, list, destroy on the $lib library"
    XL_LIBS=$(libpath "$lib")
    DOMID=none
    {
        xl_run create -p /xvm/xvm-guest.cfg
        DOMID=$(xl domid xvm-guest 2>/dev/null)
        xl_run list
        dump_guest
        xl_run destroy xvm-guest
        xl_run list
    } >"$OUT/toolstack-$lib.txt" 2>&1
done
xenstore-control log off >/dev/null 2>&1
# What started the daemon and the toolstack, sent at once (the rest may not come back).
# shellcheck disable=SC2046 # a list of names without blanks
send_back $(cd /out && ls -d dom0/*.txt dom0/daemon)

# ---------------------------------------------------------------- the hosts, started
# Two guests created at once on our library (192 MiB each: both fit beside dom0's 640 MiB in
# the machine's 1280), each given nodes to reach, its home handed over, and unpaused. They run
# guest.sh while dom0 runs its own tests below. Watchers on @introduceDomain and
# @releaseDomain run meanwhile. HOSTS_OUT/hosts.txt is the transcript, compared daemon against
# daemon; checks.txt says what had to hold (a "FAIL: " line fails the run).
HOSTS="xvm-a xvm-b"
HOSTS_OUT=$OUT/hosts
XL_LIBS=$TOOLSTACK_LIBS
DOMIDS=
mkdir -p "$HOSTS_OUT"
check() { # check WHAT CMD...: an "ok: WHAT" or "FAIL: WHAT" line in checks.txt
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then echo "ok: $what"; else echo "FAIL: $what"; fi >>"$HOSTS_OUT/checks.txt"
}
# watch_news NAME: what the watcher NAME printed since the last call, once it has printed
# nothing for a second (its events come a little after what caused them), or after a minute
# (a watcher that never stops printing then shows as a difference, not as a hang).
watch_news() {
    local f=$HOSTS_OUT/$1-watch.txt seen now=-1 _
    for _ in $(seq 60); do
        [ "$now" != "$(wc -l <"$f")" ] || break
        now=$(wc -l <"$f")
        sleep 1
    done
    seen=$(cat "$HOSTS_OUT/$1-watch.seen" 2>/dev/null || echo 0)
    echo "\$ (what xenstore-watch @$1Domain printed meanwhile)"
    tail -n "+$((seen + 1))" "$f"
    wc -l <"$f" >"$HOSTS_OUT/$1-watch.seen"
}
# gone NAME: waits (at most a minute) until xl lists no domain with NAME's domid, dying ones
# included, so that what follows does not depend on how soon the hypervisor reaped it.
gone() {
    local id=$1
    for _ in $(seq 120); do
        xl list 2>/dev/null | awk -v id="$id" '$2 == id { found = 1 } END { exit !found }' || return 0
        sleep 0.5
    done
    return 1
}
# live_updates: the daemon replaces itself ten times in a row, a few seconds apart, while the
# guests boot and run their tests and dom0 runs its own (xenstore-control live-update with the
# binary it runs: the same daemon, started again from its state). One line per update with
# its exit status and how long the start took; for our daemon each must succeed ("FAIL: "
# lines in checks.txt otherwise). The C daemon's outcome is recorded, not judged.
live_updates() {
    local i rc out t0 t1
    # Milliseconds since boot (this date has no %N).
    now_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
    for i in $(seq 10); do
        sleep 3
        t0=$(now_ms)
        # Bounded, so that a daemon that never comes back shows as a failed update, not as a
        # machine that runs out of time waiting for this loop.
        out=$(timeout -k 2 90 xenstore-control live-update -t 30 "$XENSTORED" 2>&1)
        rc=$?
        t1=$(now_ms)
        echo "update $i: exit $rc, $((t1 - t0)) ms${out:+: $out}"
        if [ "$DAEMON" = ours ]; then
            if [ $rc -eq 0 ]; then echo "ok: live update $i of 10"; else echo "FAIL: live update $i of 10: $out"; fi >>"$HOSTS_OUT/checks.txt"
        fi
    done
    echo "\$ xenstore-control check"
    timeout -k 2 60 xenstore-control check 2>&1
}
if has_part hosts; then
    progress "dom0: hosts: xl create of $HOSTS at once, on our library"
    xenstore-watch @introduceDomain >"$HOSTS_OUT/introduce-watch.txt" 2>&1 &
    introduce_pid=$!
    xenstore-watch @releaseDomain >"$HOSTS_OUT/release-watch.txt" 2>&1 &
    release_pid=$!
    sleep 1
    creates=()
    for n in $HOSTS; do
        guest_cfg "$n" 192
        { xl create -p "/xvm/$n.cfg" >"/tmp/create-$n.txt" 2>&1; echo "[exit $?]" >>"/tmp/create-$n.txt"; } &
        creates+=($!)
    done
    wait "${creates[@]}"
    for n in $HOSTS; do
        id=$(xl domid "$n" 2>/dev/null)
        DOMIDS+="${id:-none} $n "
        echo "$n ${id:-none}" >>"$OUT/domids"
        xenstore-read "/local/domain/$id/vm" 2>/dev/null | sed 's#^/vm/##' >"/tmp/uuid-$n"
    done
    {
        for n in $HOSTS; do
            echo "\$ xl create -p /xvm/$n.cfg (at once with the other)"
            norm <"/tmp/create-$n.txt"
        done
        # What the guests may and may not reach outside their homes: /xvm/granted for both (the
        # C test domu), /xvm/NAME for NAME alone (the guest scenario, whose transcript the
        # other guest's writes would change).
        xenstore-write /xvm/granted/rw from-dom0 /xvm/granted/ro read-only /xvm/granted/none secret
        r=() b=()
        # shellcheck disable=SC2086 # "ID NAME ..." is split on purpose
        set -- $DOMIDS
        while [ $# -ge 2 ]; do
            id=$1 n=$2
            shift 2
            r+=("r$id") b+=("b$id")
            xenstore-write "/xvm/$n/rw" from-dom0 "/xvm/$n/ro" read-only "/xvm/$n/none" secret
            xenstore-chmod "/xvm/$n" n0 "r$id"
            xenstore-chmod "/xvm/$n/rw" n0 "b$id"
            xenstore-chmod "/xvm/$n/ro" n0 "r$id"
            xenstore-chmod "/xvm/$n/none" n0
            # libxl leaves a guest's home dom0's (the guest may write only data/ and a few
            # others): hand it over, so that the guest's tools and test-xenstore, which work in
            # the home itself, can.
            xenstore-chmod "/local/domain/$id" "n$id"
        done
        xenstore-chmod /xvm/granted n0 "${r[@]}"
        xenstore-chmod /xvm/granted/rw n0 "${b[@]}"
        xenstore-chmod /xvm/granted/ro n0 "${r[@]}"
        xenstore-chmod /xvm/granted/none n0
        # Whose turn it is to run the C test domu, which uses /xvm/granted (guest.sh).
        xenstore-write /xvm/turn xvm-a /xvm/xvm-a/next xvm-b /xvm/xvm-b/next xvm-a
        xenstore-chmod /xvm/turn n0 "${b[@]}"
        watch_news introduce
        for n in $HOSTS; do xl_run unpause "$n"; done
        xl_run list
    } >"$HOSTS_OUT/hosts.txt" 2>&1
    progress "dom0: hosts running: $DOMIDS"
    live_updates >"$HOSTS_OUT/live-update.txt" 2>&1 &
    live_update_pid=$!
fi

# ---------------------------------------------------------------- library against library
# The guests change their nodes meanwhile: dom0's listing of the whole store leaves out the
# guests' homes, what the toolstack made for them and what dom0 granted them.
eval "scenario_$(declare -f root_listing)"
root_listing() {
    scenario_root_listing | awk '
        # A node that goes while xenstore-ls lists it gets a message on standard error, which
        # may land in the middle of a line of the listing: what follows it has no " = ", and
        # goes with the subtree it is in.
        !/ = / { if (!skip) print; next }
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

# ---------------------------------------------------------------- the hosts, ended
if has_part hosts; then
    # They are done by now when the daemon serves them well (the guests' part is shorter than
    # dom0's); a stuck guest is given four minutes in all, so that the rest can run before the
    # machine's time is up.
    progress "dom0: waiting for the live updates"
    wait "$live_update_pid"
    progress "dom0: live updates: $(grep -c ': exit 0,' "$HOSTS_OUT/live-update.txt") of 10 done"
    progress "dom0: waiting for the hosts' results"
    deadline=$(($(cut -d. -f1 /proc/uptime) + 240))
    for n in $HOSTS; do
        log=/var/log/xen/console/guest-$n.log
        while [ "$(cut -d. -f1 /proc/uptime)" -lt $deadline ]; do
            grep -aq '^XVM-PAYLOAD-END' "$log" 2>/dev/null && break
            xl domid "$n" >/dev/null 2>&1 || break
            sleep 0.5
        done
        # The guest's progress lines, then its results unpacked next to dom0's.
        tr -d '\r' <"$log" | grep -a '^XVM: ' | sed "s/^XVM: /XVM: $n| /" >/dev/console
        receive_payloads "$log" /out
        if [ "$RECEIVED" -gt 0 ]; then
            progress "dom0: results of $n received"
            send_back "$n"
        else
            progress "dom0: no results from $n"
        fi
    done
    # Each guest's console as xl console shows it (there is no tty here: its input is a pipe
    # that stays open), both at once, for a few seconds; the marker guest.sh prints there every
    # second once done must show.
    consoles=()
    for n in $HOSTS; do
        sleep 8 | LD_LIBRARY_PATH=$XL_LIBS timeout 6 "$REF_BIN/xl" console "$n" >"$HOSTS_OUT/console-$n.txt" 2>&1 &
        consoles+=($!)
    done
    wait "${consoles[@]}"
    xenstore-control rings >"$HOSTS_OUT/rings-running.txt" 2>&1
    {
        for n in $HOSTS; do
            echo "\$ xl console $n | grep XVM-CONSOLE | uniq"
            tr -d '\r' <"$HOSTS_OUT/console-$n.txt" | grep -a '^XVM-CONSOLE' | uniq
            check "xl console $n shows its marker" grep -aq "^XVM-CONSOLE $n done" "$HOSTS_OUT/console-$n.txt"
        done
        xl_run list
    } >>"$HOSTS_OUT/hosts.txt" 2>&1
    # What the hosts part has so far, in case what follows hangs.
    send_back dom0/domids dom0/hosts
    {
        # shellcheck disable=SC2086 # "ID NAME ..." is split on purpose
        set -- $DOMIDS
        progress "dom0: hosts: xl shutdown $2"
        xl_run shutdown -w "$2"
        check "$2 gone after xl shutdown" gone "$1"
        watch_news release
        progress "dom0: hosts: xl destroy $4"
        xl_run destroy "$4"
        check "$4 gone after xl destroy" gone "$3"
        sleep 1
        watch_news release
        watch_news introduce
        xl_run list
        echo "\$ xenstore-list /local/domain"
        xenstore-list /local/domain 2>&1
        # Nothing of theirs may be left, but what dom0 made (whose permissions name them).
        for n in $HOSTS; do
            id=$(awk -v n="$n" '$1 == n { print $2 }' "$OUT/domids")
            uuid=$(cat "/tmp/uuid-$n")
            nodes="^/local/domain/${id}[/ ]|^/libxl/${id}[/ ]|/backend/[a-z]+/${id}[/ ]|^/vm/${uuid:-none}[/ ]"
            echo "\$ xenstore-ls -f / | grep (the nodes of $n)"
            xenstore-ls -f / 2>&1 | grep -E "$nodes" | norm
            check "no node of $n left" sh -c "! xenstore-ls -f / | grep -qE '$nodes'"
        done
        echo "\$ xenstore-ls -f -p /xvm"
        xenstore-ls -f -p /xvm 2>&1 | norm
        echo "\$ xenstore-control check"
        xenstore-control check 2>&1
        echo "[exit $?]"
    } >>"$HOSTS_OUT/hosts.txt" 2>&1
    xenstore-control rings >"$HOSTS_OUT/rings-after.txt" 2>&1
    kill "$introduce_pid" "$release_pid" 2>/dev/null
    for n in $HOSTS; do
        mkdir -p "/out/$n"
        cp "/var/log/xen/console/guest-$n.log" "/out/$n/console.log" 2>/dev/null
    done
fi

progress "dom0: sending the rest of the results"
# shellcheck disable=SC2046,SC2086 # a list of names without blanks
send_back $(cd /out && ls -d dom0/*.txt dom0/domids dom0/hosts $(for n in $HOSTS; do echo "$n/console.log"; done) 2>/dev/null)
