#!/bin/bash
# Run the C test suite (CTest) with Debian's libxenstore and with ours, each against a fresh
# daemon of the same kind, and compare their transcripts line by line.
#
#   c-tests/run.sh [--daemon cxenstored|oxenstored|ours|embedded] [--libs "reference ours"]
#
# --daemon embedded compares our library in its two modes instead: against our xenstored
# (run "daemon"), and with XENSTORE_EMBEDDED=1 and no daemon at all (run "embedded": each
# test program has its own in-process store, and XENSTORED_PATH points nowhere to prove it is
# not used). Same engine both ways, so the transcripts must be identical: a program cannot
# tell the embedded store from a daemon. (--libs is ignored then.) Tests that cannot mean the
# same in-process skip themselves there (fork: a forked child gets its own copy of the store);
# the guest tests (xs_embedded_open_domain) run only in embedded mode.
#
# Steps: install cmake/pkg-config if missing (apt-get); fetch Debian's Xen 4.17 packages
# (scripts/reference/fetch.sh); install our library into a prefix (scripts/install.sh); then per
# library: configure c-tests/ with CMake (pkg-config finds the library), build, start the
# daemon (scripts/reference/daemon.sh), run ctest, stop the daemon. Last, compare the
# transcripts: lines starting "ext " (behaviour beyond the reference) are left out, and a test
# skipped by either library is not compared.
#
# Exit status 0 only if every test passed (or was skipped) with both libraries and every
# compared transcript is identical. Work files go to $XST_WORK (default <repo>/build/c-tests).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${XST_WORK:-$root/build/c-tests}
daemon=cxenstored
libs="reference ours"

while [ $# -gt 0 ]; do
    case $1 in
    --daemon) daemon=${2:?}; shift 2 ;;
    --libs) libs=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--daemon cxenstored|oxenstored|ours|embedded] [--libs \"reference ours\"]" >&2; exit 64 ;;
    esac
done
for lib in $libs; do
    case $lib in reference|ours) ;; *) echo "unknown library '$lib'" >&2; exit 64 ;; esac
done
case $daemon in cxenstored|oxenstored|ours|embedded) ;; *) echo "unknown daemon '$daemon'" >&2; exit 64 ;; esac

# A run is one CTest pass: a library and where its store is. Normally one run per library,
# named after it; in embedded mode our library twice.
if [ "$daemon" = embedded ]; then
    runs="daemon embedded"
    libs=ours
else
    runs=$libs
fi
run_lib() { case $1 in daemon|embedded) echo ours ;; *) echo "$1" ;; esac; }
run_daemon() {
    case $1 in
    daemon) echo ours ;;
    embedded) echo none ;;
    *) echo "$daemon" ;;
    esac
}

say() { printf '\n=== %s ===\n' "$*"; }

# ---- tools ----
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "missing ${need[*]} and not root: install them first" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${need[@]}"; then
        apt-get update -q && apt-get install -y -q "${need[@]}" || exit 1
    fi
fi

mkdir -p "$work"
rundirs=()
cleanup() {
    local d
    for d in "${rundirs[@]}"; do
        "$root/scripts/reference/daemon.sh" stop "$d" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# ---- the libraries ----
ref_root=
if [[ " $libs " == *" reference "* ]] || [ "$daemon" != ours -a "$daemon" != embedded ]; then
    say "reference packages"
    "$root/scripts/reference/fetch.sh" || exit 1
    ref_root=$(. "$root/scripts/reference/common.sh" && echo "$REF_ROOT")
fi
if [[ " $libs " == *" ours "* ]]; then
    say "installing our libxenstore into $work/prefix"
    rm -rf "$work/prefix"
    "$root/scripts/install.sh" "$work/prefix" || exit 1
fi
if [ "$daemon" = ours ] || [ "$daemon" = embedded ]; then
    say "building our xenstored"
    (cd "$root" && cargo build --release --bin xenstored) || exit 1
fi

# ---- one CTest pass per run ----
declare -A ctest_rc ctest_line
for run in $runs; do
    lib=$(run_lib "$run")
    store=$(run_daemon "$run")
    build=$work/build-$run
    transcripts=$work/transcripts/$run
    if [ "$store" = none ]; then
        say "$run: library $lib, embedded store (XENSTORE_EMBEDDED=1), no daemon"
    else
        say "$run: library $lib, daemon $store"
    fi
    rm -rf "$build" "$transcripts"
    mkdir -p "$transcripts"
    args=(-S "$here" -B "$build" -DXST_TRANSCRIPT_DIR="$transcripts")
    if [ "$lib" = reference ]; then
        args+=(-DXENSTORE_REFERENCE_ROOT="$ref_root")
    else
        args+=(-DXENSTORE_PC_PATH="$work/prefix/lib/pkgconfig")
    fi
    # Debian's libxentoolcore for the restrict test, with either library.
    [ -z "$ref_root" ] || args+=(-DXENSTORE_TOOLCORE="$ref_root/usr/lib/x86_64-linux-gnu/libxentoolcore.so.1")
    if ! cmake "${args[@]}" >"$work/cmake-$run.log" 2>&1; then
        tail -n 40 "$work/cmake-$run.log"
        echo "configuring with the $lib library FAILED (log: $work/cmake-$run.log)"
        ctest_rc[$run]=configure-failed
        ctest_line[$run]="configure failed"
        continue
    fi
    # Keep going past programs that do not link, so the others still run.
    build_ok=1
    if ! cmake --build "$build" -j 2 -- -k >>"$work/cmake-$run.log" 2>&1; then
        build_ok=0
        missing=$(grep -o "undefined reference to \`[^']*'" "$work/cmake-$run.log" |
                  sed "s/.*\`//; s/'$//" | sort -u | tr '\n' ' ')
        [ -z "$missing" ] || echo "symbols the library does not define: $missing"
        grep -E '(error|warning):' "$work/cmake-$run.log" | grep -v '^collect2' | sort -u | head -n 20
        echo "some programs did not build with the $lib library (log: $work/cmake-$run.log)"
    fi

    if [ "$store" = none ]; then
        (cd "$build" && XENSTORE_EMBEDDED=1 XENSTORED_PATH=/nonexistent/xenstored/socket \
            ctest --output-on-failure --timeout 120) 2>&1 | tee "$work/ctest-$run.log"
        ctest_rc[$run]=${PIPESTATUS[0]}
    else
        rundir=$work/run-$run
        rundirs+=("$rundir")
        "$root/scripts/reference/daemon.sh" stop "$rundir" >/dev/null 2>&1 || true
        if ! socket=$("$root/scripts/reference/daemon.sh" start "$store" "$rundir"); then
            echo "could not start $store"
            ctest_rc[$run]=daemon-failed
            ctest_line[$run]="daemon failed to start"
            continue
        fi
        (cd "$build" && XENSTORED_PATH=$socket ctest --output-on-failure --timeout 120) \
            2>&1 | tee "$work/ctest-$run.log"
        ctest_rc[$run]=${PIPESTATUS[0]}
        if ! "$root/scripts/reference/daemon.sh" stop "$rundir"; then
            echo "the $store daemon died during the run with the $lib library"
            ctest_rc[$run]=daemon-died
        fi
    fi
    [ $build_ok = 1 ] || ctest_rc[$run]="${ctest_rc[$run]}, build errors"
    ctest_line[$run]=$(grep -E '[0-9]+% tests passed' "$work/ctest-$run.log" | tail -n 1)
done

# ---- per-test results from the transcripts ----
# Outcome of one test with one library: skipped / passed / failed / missing.
outcome() {
    local t=$1
    [ -f "$t" ] || { echo missing; return; }
    if grep -q '^skipped: ' "$t"; then echo skipped
    elif grep -qE '^result: .* 0 failed$' "$t"; then echo passed
    else echo failed
    fi
}

passed=0 failed=0 skipped=0
declare -A seen
for run in $runs; do
    for t in "$work/transcripts/$run"/*.txt; do
        [ -f "$t" ] && seen[$(basename "$t" .txt)]=1
    done
done
names=$(printf '%s\n' "${!seen[@]}" | sort)

say "results per test"
printf '%-14s' test
for run in $runs; do printf '%-12s' "$run"; done
[ "$(echo $runs | wc -w)" = 2 ] && printf '%s' "transcripts"
echo
compared=0 differ=0
diffs=$work/transcript-differences.txt
: >"$diffs"
for n in $names; do
    printf '%-14s' "$n"
    outs=()
    for run in $runs; do
        o=$(outcome "$work/transcripts/$run/$n.txt")
        outs+=("$o")
        printf '%-12s' "$o"
        case $o in
        passed) passed=$((passed + 1)) ;;
        skipped) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
        esac
    done
    if [ ${#outs[@]} = 2 ]; then
        set -- $runs
        ra=$1 rb=$2
        a=$work/transcripts/$ra/$n.txt b=$work/transcripts/$rb/$n.txt
        if [[ " ${outs[*]} " == *" skipped "* || " ${outs[*]} " == *" missing "* ]]; then
            printf 'not compared'
            skipped=$((skipped + 1))
        elif diff -u --label "$ra/$n" --label "$rb/$n" \
                <(grep -v '^ext ' "$a") <(grep -v '^ext ' "$b") >"$work/diff-$n.txt"; then
            printf 'identical'
            passed=$((passed + 1)); compared=$((compared + 1))
            rm -f "$work/diff-$n.txt"
        else
            printf '%s lines differ' "$(grep -c '^[-+][^-+]' "$work/diff-$n.txt")"
            failed=$((failed + 1)); compared=$((compared + 1)); differ=$((differ + 1))
            cat "$work/diff-$n.txt" >>"$diffs"
        fi
    fi
    echo
done

if [ -s "$diffs" ]; then
    say "transcript differences ($(echo $runs | sed "s/ / vs /"); first 200 lines, all in $diffs)"
    head -n 200 "$diffs"
fi

if [ "$daemon" = embedded ]; then
    say "summary (our library: against our xenstored, and embedded)"
else
    say "summary (daemon: $daemon)"
fi
status=0
for run in $runs; do
    echo "ctest, $run: ${ctest_line[$run]:-no result} (exit ${ctest_rc[$run]:-?})"
    [ "${ctest_rc[$run]:-1}" = 0 ] || status=1
    # A run that could not even start (configure, daemon) counts as one failure of its own.
    case ${ctest_rc[$run]:-none} in
    configure-failed|daemon-failed|none) failed=$((failed + 1)) ;;
    esac
done
if [ "$(echo $runs | wc -w)" = 2 ]; then
    echo "transcripts compared: $compared, differing: $differ"
fi
[ "$failed" = 0 ] || status=1
echo "transcripts: $work/transcripts"
echo "c-tests: $passed passed, $failed failed, $skipped skipped"
exit $status
