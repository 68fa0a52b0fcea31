#!/bin/bash
# Conformance runs against Xen 4.17: Debian's xenstore tools and test-xenstore
# play a fixed scenario (scenario.sh) for every combination of
#
#   library: debian (Debian's libxenstore.so.4)   ours (<repo>/target/release)
#   daemon:  cxenstored  oxenstored  (Debian's, see scripts/reference)   ours
#
# and the transcript of each run is compared with the recorded one of the
# reference daemon (expected/<daemon>.txt; our daemon is held to the C daemon's
# transcript).  Prints PASS/FAIL per combination, a diff for each failure, and
# a last line "N passed, N failed"; exits non-zero when anything failed.
#
# Usage: conformance.sh [--lib L] [--daemon D] [--record] [--keep] [--help]
#   --lib L       debian, ours or all (default); may repeat or be comma-separated
#   --daemon D    cxenstored, oxenstored, ours or all (default); idem
#   --record      run Debian's library against the reference daemons and
#                 rewrite expected/*.txt from the transcripts
#   --keep        keep the work directory (transcripts, diffs) even when all
#                 passed; it is always kept after a failure
# Environment:
#   XS_CONF_LIBS, XS_CONF_DAEMONS   defaults for --lib / --daemon (space-separated)
#   XS_OURS_LIBDIR   where our libxenstore.so.4 is (default <repo>/target/release)
#   XS_OURS_BIN      our daemon (default <repo>/target/release/xenstored)
#   XS_OURS_EXPECTED transcript our daemon must match (default ours: expected/cxenstored.txt
#                    but for the release-target line of docs/daemon-differences.md)
#   XS_CONF_RANDOM_SECONDS  length of the test-xenstore -r run (default 2)
#   XS_CONF_DIFF_LINES      diff lines shown per failure (default 80)
#   XS_CONF_STEP_TIMEOUT    seconds before a hanging step is killed (default
#                           10); after 2 such steps the rest is skipped
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../scripts/reference/common.sh"
DAEMON_SH=$REF_SCRIPTS/daemon.sh
EXPECTED_DIR=$HERE/expected
OURS_LIBDIR=${XS_OURS_LIBDIR:-$REPO_ROOT/target/release}
OURS_EXPECTED=${XS_OURS_EXPECTED:-ours}

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

libs=() daemons=() record= keep=
add_list() { # add_list ARRAY VALUE: splits commas
    local -n arr=$1
    local v
    IFS=, read -ra v <<<"$2"
    arr+=("${v[@]}")
}
while [ $# -gt 0 ]; do
    case $1 in
    --lib) [ $# -ge 2 ] || usage 64; add_list libs "$2"; shift ;;
    --lib=*) add_list libs "${1#*=}" ;;
    --daemon) [ $# -ge 2 ] || usage 64; add_list daemons "$2"; shift ;;
    --daemon=*) add_list daemons "${1#*=}" ;;
    --record) record=1 ;;
    --keep) keep=1 ;;
    -h | --help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 64 ;;
    esac
    shift
done
# shellcheck disable=SC2206
[ ${#libs[@]} -eq 0 ] && libs=(${XS_CONF_LIBS:-all})
# shellcheck disable=SC2206
[ ${#daemons[@]} -eq 0 ] && daemons=(${XS_CONF_DAEMONS:-all})
[[ " ${libs[*]} " == *" all "* ]] && libs=(debian ours)
[[ " ${daemons[*]} " == *" all "* ]] && daemons=(cxenstored oxenstored ours)
if [ -n "$record" ]; then libs=(debian) daemons=(cxenstored oxenstored); fi
for l in "${libs[@]}"; do
    case $l in debian | ours) ;; *) echo "unknown library: $l" >&2; usage 64 ;; esac
done
for d in "${daemons[@]}"; do
    case $d in cxenstored | oxenstored | ours) ;; *) echo "unknown daemon: $d" >&2; usage 64 ;; esac
done

# Debian's tools and test programs, fetched and shimmed once.
"$REF_SCRIPTS/build.sh" "$REF_DIR" >&2 || { echo "cannot prepare the reference packages" >&2; exit 2; }

passed=0 failed=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xs-conformance.XXXXXX")
RUNDIRS=()
cleanup() {
    local r
    for r in "${RUNDIRS[@]}"; do
        "$DAEMON_SH" status "$r" 2>/dev/null && "$DAEMON_SH" stop "$r" >/dev/null 2>&1
    done
    if [ -n "$keep" ] || [ "$failed" -gt 0 ]; then
        rm -rf "$WORK/bin"
        echo "transcripts kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
# Set while a scenario runs: the leader of its process group.
SCENARIO_PID=
on_signal() {
    [ -n "$SCENARIO_PID" ] && kill -TERM -- "-$SCENARIO_PID" 2>/dev/null
    exit 130
}
trap cleanup EXIT
trap on_signal INT TERM HUP
# Job control: every background job gets its own process group.
set -m

# The tools under their usual names (the multi-call binary looks at argv[0]);
# xenstore-control's /usr/bin entry is a wrapper needing a hypervisor.
TOOLS=$WORK/bin
mkdir -p "$TOOLS"
for t in "$REF_TOOLS"/xenstore "$REF_TOOLS"/xenstore-*; do
    [ "$(basename "$t")" = xenstore-control ] || ln -s "$t" "$TOOLS/"
done
ln -s "$REF_BIN/xenstore-control" "$REF_BIN/test-xenstore" "$TOOLS/"
# Our probe of the calls the tools never make, linked like any Debian client.
gcc -O2 -Wall -Wextra -Werror -I"$REF_ROOT/usr/include" -o "$TOOLS/xsprobe" "$HERE/xsprobe.c" \
    -L"$REF_LIB" -Wl,-rpath-link,"$REF_LIB" -lxenstore || { echo "cannot build xsprobe" >&2; exit 2; }

# ------------------------------------------------------------- transcript steps

. "$HERE/steps.sh"
. "$HERE/scenario.sh"

# ------------------------------------------------------------- combinations

summary=()

result() { # result STATUS LABEL [DETAIL]
    if [ "$1" = PASS ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    summary+=("$(printf '%-4s  %s%s' "$1" "$2" "${3:+  ($3)}")")
    printf '%-4s  %s%s\n' "$1" "$2" "${3:+  ($3)}"
}

run_combo() {
    local lib=$1 daemon=$2 label="library=$lib daemon=$daemon" libdir ref sock rc died=
    CUR=$WORK/$lib-$daemon
    mkdir -p "$CUR"
    case $lib in
    debian) libdir=$REF_LIB ;;
    ours)
        libdir=$OURS_LIBDIR
        if [ ! -e "$libdir/libxenstore.so.4" ]; then
            result FAIL "$label" "no $libdir/libxenstore.so.4: run cargo build --release"
            return
        fi
        # Ours first, so it is the libxenstore.so.4 loaded; Debian's directory after it for
        # the other Xen libraries some tools need (xenstore-control: libxenctrl).
        libdir=$libdir:$REF_LIB
        ;;
    esac
    ref=$daemon
    [ "$daemon" = ours ] && ref=$OURS_EXPECTED

    RUNDIRS+=("$CUR/run")
    if ! sock=$("$DAEMON_SH" start "$daemon" "$CUR/run" 2>"$CUR/start.err"); then
        cat "$CUR/start.err"
        result FAIL "$label" "daemon did not start"
        return
    fi
    # In the background, as its own process group (job control is on), so a
    # signal can stop it and everything it started at once (see on_signal).
    (
        export PATH="$TOOLS:$PATH" XENSTORED_PATH=$sock LD_LIBRARY_PATH=$libdir
        unset XENSTORED_RUNDIR
        # A library the tools cannot even load would only produce a diff as
        # long as the scenario: say so once instead.
        if ! step xenstore-exists / >"$CUR/preflight.txt" 2>&1 &&
            grep -qE 'symbol lookup error|error while loading shared libraries' "$CUR/preflight.txt"; then
            exit 3
        fi
        scenario
    ) >"$CUR/transcript.txt" 2>&1 &
    SCENARIO_PID=$!
    wait "$SCENARIO_PID"
    rc=$?
    SCENARIO_PID=
    if [ $rc -eq 3 ]; then
        "$DAEMON_SH" stop "$CUR/run" >/dev/null 2>&1
        cat "$CUR/preflight.txt"
        result FAIL "$label" "the tools cannot load libxenstore.so.4 from $libdir"
        return
    fi
    "$DAEMON_SH" stop "$CUR/run" 2>"$CUR/stop.err" || { died=1; cat "$CUR/stop.err"; }

    if [ -n "$record" ]; then
        mkdir -p "$EXPECTED_DIR"
        cp "$CUR/transcript.txt" "$EXPECTED_DIR/$daemon.txt"
        echo "recorded $EXPECTED_DIR/$daemon.txt"
    fi
    if [ ! -f "$EXPECTED_DIR/$ref.txt" ]; then
        result FAIL "$label" "no expected/$ref.txt: run with --record"
        return
    fi
    diff -a -u --label "expected/$ref.txt" --label "$lib library, $daemon daemon" \
        "$EXPECTED_DIR/$ref.txt" "$CUR/transcript.txt" >"$CUR/diff.txt"
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$died" ]; then
        result PASS "$label"
    else
        if [ $rc -ne 0 ]; then
            head -n "${XS_CONF_DIFF_LINES:-80}" "$CUR/diff.txt"
            [ "$(wc -l <"$CUR/diff.txt")" -gt "${XS_CONF_DIFF_LINES:-80}" ] &&
                echo "... ($(wc -l <"$CUR/diff.txt") diff lines in all: $CUR/diff.txt)"
        fi
        local hung
        hung=$(cat "$CUR/preflight.txt" "$CUR/transcript.txt" | grep -c '^\[timed out after')
        [ "$hung" -gt 0 ] && hung="$hung step(s) timed out; " || hung=
        result FAIL "$label" "${died:+daemon died; }$hung$( [ $rc -ne 0 ] && echo "transcript differs from expected/$ref.txt")"
    fi
}

start_time=$SECONDS
for lib in "${libs[@]}"; do
    for daemon in "${daemons[@]}"; do
        run_combo "$lib" "$daemon"
    done
done

echo
echo "== summary ($((SECONDS - start_time)) s)"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
