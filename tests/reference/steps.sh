# The transcript steps of a scenario (scenario.sh, scripts/xen-vm/scenario-guest.sh): each
# prints the command line as run, its output and its exit status, with nothing that varies
# between runs. Sourced by the scripts that play a scenario (conformance.sh here, and the
# dom0 and guest scripts of scripts/xen-vm); they set CUR, a directory for scratch files.
# Needs bash and coreutils' timeout.

# A step that hangs is killed after STEP_TIMEOUT seconds; after MAX_TIMEOUTS
# such steps the rest of the combination is skipped, so a library or daemon
# that hangs costs at most a minute or so instead of every step's timeout.
# --foreground keeps the tools in the scenario's process group (see run_combo).
STEP_TIMEOUT=${XS_CONF_STEP_TIMEOUT:-10}
MAX_TIMEOUTS=2
timeouts=0

# step CMD...: runs CMD under the timeout unless we gave up; returns its status.
step() {
    local rc
    if [ "$timeouts" -ge "$MAX_TIMEOUTS" ]; then
        echo "[skipped: $MAX_TIMEOUTS steps timed out already]"
        return 125
    fi
    timeout --foreground -k 2 "$STEP_TIMEOUT" "$@"
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        timeouts=$((timeouts + 1))
        echo "[timed out after ${STEP_TIMEOUT}s]"
    fi
    return $rc
}

section() { printf '\n## %s\n' "$*"; }

# The command line as run, with long arguments and long lists abbreviated.
show_cmd() {
    local line='$' a n=0
    for a in "$@"; do
        if [ $n -eq 7 ] && [ $# -gt 9 ]; then
            line+=" ...[$(($# - 7)) more arguments]"
            break
        fi
        [ ${#a} -gt 40 ] && a="${a:0:12}...[${#a} chars]"
        line+=" $(printf '%q' "$a")"
        n=$((n + 1))
    done
    echo "$line"
}

# run CMD...: the command, its output (stdout and stderr) and exit status.
run() {
    show_cmd "$@"
    step "$@" 2>&1
    echo "[exit $?]"
}

# run_quiet CMD...: as run, but long output shown as its size and checksum,
# short output with control and non-ASCII bytes made visible (cat -v).
run_quiet() {
    local rc size
    show_cmd "$@"
    step "$@" >"$CUR/step.out" 2>&1
    rc=$?
    size=$(wc -c <"$CUR/step.out")
    if [ "$size" -le 200 ]; then
        cat -v "$CUR/step.out"
    else
        echo "<$size bytes, md5 $(md5sum <"$CUR/step.out" | cut -c1-12)>"
    fi
    echo "[exit $rc]"
}

# run_in FILTER CMD...: as run, output passed through FILTER.
run_in() {
    local filter=$1 rc
    shift
    show_cmd "$@"
    step "$@" >"$CUR/step.out" 2>&1
    rc=$?
    "$filter" <"$CUR/step.out"
    echo "[exit $rc]"
}

# test-xenstore prints how long each test took.
test_timings() {
    sed -E 's/: avg: [0-9]+ ns \([0-9]+ ns \.\. [0-9]+ ns\)$/: <timing>/; s/: [0-9]+ ns$/: <timing>/'
}

# watch_during N PATH -- CMD...: xenstore-watch -n N PATH runs while CMD runs;
# its events are shown after CMD's transcript.  CMD starts once the watch's
# initial event has arrived, i.e. once the watch is registered.
watch_during() {
    local n=$1 path=$2 wpid rc i
    shift 3
    : >"$CUR/watch.out"
    if [ "$timeouts" -ge "$MAX_TIMEOUTS" ]; then
        show_cmd xenstore-watch -n "$n" "$path"
        echo "[skipped: $MAX_TIMEOUTS steps timed out already]"
        return
    fi
    timeout --foreground -k 2 "$STEP_TIMEOUT" xenstore-watch -n "$n" "$path" >"$CUR/watch.out" 2>&1 &
    wpid=$!
    for ((i = 0; i < 250; i++)); do
        [ -s "$CUR/watch.out" ] && break
        kill -0 "$wpid" 2>/dev/null || break
        sleep 0.02
    done
    [ $# -gt 0 ] && run "$@"
    wait "$wpid"
    rc=$?
    show_cmd xenstore-watch -n "$n" "$path"
    cat "$CUR/watch.out"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        timeouts=$((timeouts + 1))
        echo "[timed out after ${STEP_TIMEOUT}s]"
    fi
    echo "[exit $rc]"
}
