#!/bin/bash
# Run the C test suite (CTest) with Debian's libxenstore and with ours, each against a fresh
# daemon of the same kind, and compare their transcripts line by line.
#
#   c-tests/run.sh [--daemon cxenstored|oxenstored|ours] [--libs "reference ours"]
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
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--daemon cxenstored|oxenstored|ours] [--libs \"reference ours\"]" >&2; exit 64 ;;
    esac
done
for lib in $libs; do
    case $lib in reference|ours) ;; *) echo "unknown library '$lib'" >&2; exit 64 ;; esac
done

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
if [[ " $libs " == *" reference "* ]] || [ "$daemon" != ours ]; then
    say "reference packages"
    "$root/scripts/reference/fetch.sh" || exit 1
    ref_root=$(. "$root/scripts/reference/common.sh" && echo "$REF_ROOT")
fi
if [[ " $libs " == *" ours "* ]]; then
    say "installing our libxenstore into $work/prefix"
    rm -rf "$work/prefix"
    "$root/scripts/install.sh" "$work/prefix" || exit 1
fi
if [ "$daemon" = ours ]; then
    say "building our xenstored"
    (cd "$root" && cargo build --release --bin xenstored) || exit 1
fi

# ---- one CTest run per library ----
declare -A ctest_rc ctest_line
for lib in $libs; do
    build=$work/build-$lib
    transcripts=$work/transcripts/$lib
    say "library: $lib, daemon: $daemon"
    rm -rf "$build" "$transcripts"
    mkdir -p "$transcripts"
    args=(-S "$here" -B "$build" -DXST_TRANSCRIPT_DIR="$transcripts")
    if [ "$lib" = reference ]; then
        args+=(-DXENSTORE_REFERENCE_ROOT="$ref_root")
    else
        args+=(-DXENSTORE_PC_PATH="$work/prefix/lib/pkgconfig")
    fi
    if ! cmake "${args[@]}" >"$work/cmake-$lib.log" 2>&1; then
        tail -n 40 "$work/cmake-$lib.log"
        echo "configuring with the $lib library FAILED (log: $work/cmake-$lib.log)"
        ctest_rc[$lib]=configure-failed
        ctest_line[$lib]="configure failed"
        continue
    fi
    # Keep going past programs that do not link, so the others still run.
    build_ok=1
    if ! cmake --build "$build" -j 2 -- -k >>"$work/cmake-$lib.log" 2>&1; then
        build_ok=0
        missing=$(grep -o "undefined reference to \`[^']*'" "$work/cmake-$lib.log" |
                  sed "s/.*\`//; s/'$//" | sort -u | tr '\n' ' ')
        [ -z "$missing" ] || echo "symbols the library does not define: $missing"
        grep -E '(error|warning):' "$work/cmake-$lib.log" | grep -v '^collect2' | sort -u | head -n 20
        echo "some programs did not build with the $lib library (log: $work/cmake-$lib.log)"
    fi

    rundir=$work/run-$lib
    rundirs+=("$rundir")
    "$root/scripts/reference/daemon.sh" stop "$rundir" >/dev/null 2>&1 || true
    if ! socket=$("$root/scripts/reference/daemon.sh" start "$daemon" "$rundir"); then
        echo "could not start $daemon"
        ctest_rc[$lib]=daemon-failed
        ctest_line[$lib]="daemon failed to start"
        continue
    fi
    (cd "$build" && XENSTORED_PATH=$socket ctest --output-on-failure --timeout 120) \
        2>&1 | tee "$work/ctest-$lib.log"
    ctest_rc[$lib]=${PIPESTATUS[0]}
    [ $build_ok = 1 ] || ctest_rc[$lib]="${ctest_rc[$lib]}, build errors"
    ctest_line[$lib]=$(grep -E '[0-9]+% tests passed' "$work/ctest-$lib.log" | tail -n 1)
    if ! "$root/scripts/reference/daemon.sh" stop "$rundir"; then
        echo "the $daemon daemon died during the run with the $lib library"
        ctest_rc[$lib]=daemon-died
    fi
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
for lib in $libs; do
    for t in "$work/transcripts/$lib"/*.txt; do
        [ -f "$t" ] && seen[$(basename "$t" .txt)]=1
    done
done
names=$(printf '%s\n' "${!seen[@]}" | sort)

say "results per test"
printf '%-14s' test
for lib in $libs; do printf '%-12s' "$lib"; done
[ "$(echo $libs | wc -w)" = 2 ] && printf '%s' "transcripts"
echo
compared=0 differ=0
diffs=$work/transcript-differences.txt
: >"$diffs"
for n in $names; do
    printf '%-14s' "$n"
    outs=()
    for lib in $libs; do
        o=$(outcome "$work/transcripts/$lib/$n.txt")
        outs+=("$o")
        printf '%-12s' "$o"
        case $o in
        passed) passed=$((passed + 1)) ;;
        skipped) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
        esac
    done
    if [ ${#outs[@]} = 2 ]; then
        a=$work/transcripts/reference/$n.txt b=$work/transcripts/ours/$n.txt
        if [[ " ${outs[*]} " == *" skipped "* || " ${outs[*]} " == *" missing "* ]]; then
            printf 'not compared'
            skipped=$((skipped + 1))
        elif diff -u --label "reference/$n" --label "ours/$n" \
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
    say "transcript differences (reference vs ours; first 200 lines, all in $diffs)"
    head -n 200 "$diffs"
fi

say "summary (daemon: $daemon)"
status=0
for lib in $libs; do
    echo "ctest with the $lib library: ${ctest_line[$lib]:-no result} (exit ${ctest_rc[$lib]:-?})"
    [ "${ctest_rc[$lib]:-1}" = 0 ] || status=1
    # A run that could not even start (configure, daemon) counts as one failure of its own.
    case ${ctest_rc[$lib]:-none} in
    configure-failed|daemon-failed|none) failed=$((failed + 1)) ;;
    esac
done
if [ "$(echo $libs | wc -w)" = 2 ]; then
    echo "transcripts compared: $compared, differing: $differ"
fi
[ "$failed" = 0 ] || status=1
echo "transcripts: $work/transcripts"
echo "c-tests: $passed passed, $failed failed, $skipped skipped"
exit $status
