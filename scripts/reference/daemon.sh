#!/bin/bash
# Run a xenstore daemon in the background on a plain Linux host.
#
#   daemon.sh start {cxenstored|oxenstored|ours} RUNDIR
#       Starts the daemon, waits until its socket accepts connections and
#       prints the socket path (always RUNDIR/socket) on stdout.  On failure
#       prints the daemon's log and exits non-zero, leaving nothing running.
#   daemon.sh stop RUNDIR
#       Stops the daemon started in RUNDIR and removes what start created
#       (RUNDIR itself too when it ends up empty).  Exits 1, after printing
#       the log, if the daemon had already died by itself.
#   daemon.sh status RUNDIR
#       Exits 0 if the daemon of RUNDIR is running.
#
# cxenstored / oxenstored are Debian's Xen 4.17 daemons (fetched and shimmed
# on first use, see fetch.sh and xenstubs.c); ours is <repo>/target/release/xenstored
# (override with XS_OURS_BIN).  Clients reach any of them with
# XENSTORED_PATH=RUNDIR/socket (or XENSTORED_RUNDIR=RUNDIR).
#
# Environment:
#   XS_DAEMON_ARGS     extra arguments for the daemon
#   XS_DAEMON_VERBOSE  1: C xenstored logs every message (-V) to RUNDIR/daemon.log,
#                      oxenstored logs at debug level to RUNDIR/xenstored.log
#   XS_DAEMON_TIMEOUT  seconds to wait for the socket (default 10)
#   XS_OURS_BIN        our daemon binary
#   XS_DAEMON_WRAP     a command the C xenstored or ours runs under (e.g. valgrind and its
#                      options; bench/profile.py)
#   XS_OX_NO_NAMESPACE 1: run oxenstored on the host's /var/run/xenstored even
#                      when a private mount namespace is possible
#   XENSTUBS_ALIVE_FILE, XENSTUBS_EVTCHN_FIFO   see xenstubs.c
set -euo pipefail
. "$(dirname "$0")/common.sh"

usage() {
    echo "usage: $0 start {cxenstored|oxenstored|ours} RUNDIR | stop RUNDIR | status RUNDIR" >&2
    exit 64
}

# Files start creates in RUNDIR; stop removes exactly these.
OWNED_FILES=(socket daemon.pid daemon.kind daemon.log xsd_kva xsd_port oxenstored.conf
             oxenstored.pid xenstored.log access.log)
OWNED_DIRS=(run)

# Lock serialising oxenstored instances when they must share the host's
# /var/run/xenstored/socket (only when mount namespaces are unavailable).
OX_LOCK=${TMPDIR:-/tmp}/xenstore-reference-oxenstored.lock
OX_HOST_DIR=/var/run/xenstored

pid_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    # An unreaped zombie still answers kill -0.
    state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$state" != X ]
}

show_log() {
    local rundir=$1
    if [ -s "$rundir/daemon.log" ]; then
        echo "---- $rundir/daemon.log (last 40 lines) ----" >&2
        tail -n 40 "$rundir/daemon.log" >&2
        echo "----" >&2
    fi
    if [ -s "$rundir/xenstored.log" ]; then
        echo "---- $rundir/xenstored.log (last 20 lines) ----" >&2
        tail -n 20 "$rundir/xenstored.log" >&2
        echo "----" >&2
    fi
}

# kill_daemon PID: TERM the daemon's process group, then KILL after 3 s.
kill_daemon() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.02
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.02
    done
    echo "warning: daemon pid $pid did not exit" >&2
}

cleanup_rundir() {
    local rundir=$1 kind f
    kind=$(cat "$rundir/daemon.kind" 2>/dev/null || true)
    # oxenstored without a namespace used the host's directory.
    if [ "$kind" = oxenstored-hostdir ]; then
        rm -f "$OX_HOST_DIR/socket" "$OX_HOST_DIR/db"
        rmdir "$OX_HOST_DIR" 2>/dev/null || true
    fi
    for f in "${OWNED_FILES[@]}"; do rm -f "$rundir/$f"; done
    for f in "${OWNED_DIRS[@]}"; do rm -rf "${rundir:?}/$f"; done
    rmdir "$rundir" 2>/dev/null || true
}

# Can we give oxenstored a private /run?  Needs CAP_SYS_ADMIN.
have_mount_ns() {
    [ "${XS_OX_NO_NAMESPACE:-0}" != 1 ] && command -v unshare >/dev/null && unshare -m true 2>/dev/null
}

# Sets CMD (argv array) and the environment for the chosen daemon.
prepare() {
    local kind=$1 rundir=$2
    # shellcheck disable=SC2206
    local extra=(${XS_DAEMON_ARGS:-})
    # shellcheck disable=SC2206
    local wrap=(${XS_DAEMON_WRAP:-})
    case $kind in
    cxenstored)
        "$REF_SCRIPTS/build.sh" "$REF_DIR" >&2
        local verbose=()
        [ "${XS_DAEMON_VERBOSE:-0}" = 1 ] && verbose=(-V)
        # -N: stay in the foreground; the default in-memory database keeps it
        # away from /var/lib/xenstored.  The shim supplies /proc/xen/xsd_*.
        CMD=(env LD_LIBRARY_PATH="$REF_LIB" LD_PRELOAD="$REF_STUBS"
             "${wrap[@]}" "$REF_BIN/xenstored" -N "${verbose[@]}" "${extra[@]}")
        ;;
    oxenstored)
        "$REF_SCRIPTS/build.sh" "$REF_DIR" >&2
        head -c 4096 /dev/zero >"$rundir/xsd_kva"
        printf 1 >"$rundir/xsd_port"
        cat >"$rundir/oxenstored.conf" <<EOF
pid-file = $rundir/oxenstored.pid
persistent = false
xenstored-kva = $rundir/xsd_kva
xenstored-port = $rundir/xsd_port
xenstored-log-file = $rundir/xenstored.log
xenstored-log-level = $([ "${XS_DAEMON_VERBOSE:-0}" = 1 ] && echo debug || echo info)
access-log-file = $rundir/access.log
EOF
        local ox=(env LD_LIBRARY_PATH="$REF_LIB" LD_PRELOAD="$REF_STUBS"
                  "$REF_BIN/oxenstored" --no-fork --config-file "$rundir/oxenstored.conf"
                  "${extra[@]}")
        if have_mount_ns; then
            # oxenstored always binds /var/run/xenstored/socket: give it a
            # private /run backed by RUNDIR/run so instances never collide.
            mkdir -p "$rundir/run"
            CMD=(unshare -m sh -c 'mount --bind "$0" /var/run && exec "$@"' "$rundir/run" "${ox[@]}")
            ln -sfn "$rundir/run/xenstored/socket" "$rundir/socket"
            echo oxenstored >"$rundir/daemon.kind"
        else
            # The lock is taken here and inherited by the daemon (fd 9), so it
            # is held exactly as long as the daemon lives.
            exec 9>"$OX_LOCK"
            flock -w "${XS_DAEMON_TIMEOUT:-10}" 9 ||
                ref_die "another oxenstored is using $OX_HOST_DIR (lock $OX_LOCK held)"
            # A live socket there with the lock free belongs to a real xenstored.
            if "$SOCKWAIT" "$OX_HOST_DIR/socket" 0 2>/dev/null; then
                ref_die "$OX_HOST_DIR/socket is served by a daemon not started here; not touching it"
            fi
            rm -f "$OX_HOST_DIR/socket" "$OX_HOST_DIR/db"
            CMD=("${ox[@]}")
            ln -sfn "$OX_HOST_DIR/socket" "$rundir/socket"
            echo oxenstored-hostdir >"$rundir/daemon.kind"
        fi
        ;;
    ours)
        "$REF_SCRIPTS/build.sh" --sockwait-only "$REF_DIR" >&2
        local bin=${XS_OURS_BIN:-$REPO_ROOT/target/release/xenstored}
        [ -x "$bin" ] || ref_die "$bin not found: run 'cargo build --release' first"
        # -N: stay in the foreground, as the other two are run.
        CMD=("${wrap[@]}" "$bin" -N "${extra[@]}")
        ;;
    *) usage ;;
    esac
}

# EXIT trap of a failed start: kill whatever was started, remove the files.
abort_start() {
    local pid
    pid=$(cat "$START_RUNDIR/daemon.pid" 2>/dev/null || true)
    [ -n "$pid" ] && pid_alive "$pid" && kill_daemon "$pid"
    cleanup_rundir "$START_RUNDIR"
}

start() {
    local kind=$1 rundir pid rc
    rundir=$(realpath -m "$2")
    # sun_path holds 108 bytes including the NUL.
    [ ${#rundir} -le $((107 - 7)) ] ||
        ref_die "RUNDIR too long for a Unix socket path ($rundir/socket > 107 bytes)"
    mkdir -p "$rundir"
    if [ -f "$rundir/daemon.pid" ] && pid_alive "$(cat "$rundir/daemon.pid")"; then
        ref_die "a daemon is already running in $rundir (pid $(cat "$rundir/daemon.pid"))"
    fi
    cleanup_rundir "$rundir"
    mkdir -p "$rundir"
    # Whatever goes wrong from here on, leave nothing behind.
    START_RUNDIR=$rundir
    trap 'abort_start' EXIT
    echo "$kind" >"$rundir/daemon.kind"
    prepare "$kind" "$rundir"

    # Own session, so stop can signal the whole process group; the pid is
    # written from inside so it is the daemon's even if setsid had to fork.
    XENSTORED_RUNDIR=$rundir XENSTORED_PATH=$rundir/socket \
        setsid sh -c 'echo $$ >"$0"; exec "$@"' "$rundir/daemon.pid" "${CMD[@]}" \
        </dev/null >"$rundir/daemon.log" 2>&1 &
    for ((rc = 0; rc < 100; rc++)); do
        [ -s "$rundir/daemon.pid" ] && break
        sleep 0.01
    done
    pid=$(cat "$rundir/daemon.pid" 2>/dev/null || echo "$!")

    rc=0
    "$SOCKWAIT" "$rundir/socket" "$((${XS_DAEMON_TIMEOUT:-10} * 1000))" "$pid" || rc=$?
    if [ $rc -ne 0 ]; then
        local bg=$! status=0
        if [ $rc -eq 2 ]; then
            wait "$bg" 2>/dev/null || status=$?
            echo "error: $kind exited during start-up (status $status)" >&2
        else
            echo "error: $kind did not accept connections on $rundir/socket within ${XS_DAEMON_TIMEOUT:-10}s" >&2
        fi
        show_log "$rundir"
        exit 1
    fi
    trap - EXIT
    echo "$rundir/socket"
}

stop() {
    local rundir pid rc=0
    rundir=$(realpath -m "$1")
    [ -f "$rundir/daemon.pid" ] || { cleanup_rundir "$rundir"; return 0; }
    pid=$(cat "$rundir/daemon.pid")
    if pid_alive "$pid"; then
        kill_daemon "$pid"
    else
        echo "error: the daemon in $rundir (pid $pid) had died" >&2
        show_log "$rundir"
        rc=1
    fi
    cleanup_rundir "$rundir"
    return $rc
}

status() {
    local rundir
    rundir=$(realpath -m "$1")
    [ -f "$rundir/daemon.pid" ] && pid_alive "$(cat "$rundir/daemon.pid")"
}

case ${1:-} in
start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
stop) [ $# -eq 2 ] || usage; stop "$2" ;;
status) [ $# -eq 2 ] || usage; status "$2" ;;
*) usage ;;
esac
