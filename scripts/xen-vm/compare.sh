#!/bin/bash
# Compares what ran inside the emulated machine (scripts/xen-vm/run.sh) library against library:
# for each place (dom0, guest), every transcript made with Debian's libxenstore against the
# same one made with ours, line by line, after normalising what may vary from run to run
# (addresses, pids, timings). Also fails on a C test that failed with either library.
#
#   scripts/xen-vm/compare.sh OUT_DIR [SECONDS_SO_FAR]
set -uo pipefail
out=${1:?usage: compare.sh OUT_DIR [SECONDS]}
elapsed=${2:-}
problems=()
declare -A matched total

# normalise FILE: what differs between runs of the same program, whatever the library.
normalise() {
    sed -E -e 's/0x[0-9a-f]{6,}/<addr>/g' -e 's/\b(pid|PID) [0-9]+/\1 <pid>/g' \
        -e 's/[0-9]+(\.[0-9]+)? ?(ns|us|µs|ms)\b/<time>/g' "$1"
}
# ctest_lines FILE: as normalise; lines about behaviour beyond the reference ("ext ") are ours
# alone.
ctest_lines() { grep -v '^ext ' "$1" | normalise /dev/stdin; }

# Differences we mean to have (docs/upstream-differences.md): known-differences.txt lists, per
# transcript, a line of Debian's library and the line ours gives instead; the Debian side is
# rewritten accordingly before comparing.
known=$(dirname "$0")/known-differences.txt
accepted=0
# accept_known LABEL FILE: sets KNOWN to a copy of FILE with those lines rewritten.
accept_known() {
    local label=$1 file=$2 l d o
    KNOWN=$file.known
    cp "$file" "$file.known"
    while IFS=$'\t' read -r l d o; do
        [ "$l" = "$label" ] || continue
        grep -qxF -- "$d" "$file.known" || continue
        awk -v d="$d" -v o="$o" '$0 == d { print o; next } { print }' "$file.known" >"$file.tmp" &&
            mv "$file.tmp" "$file.known"
        accepted=$((accepted + 1))
    done < <(grep -v '^#' "$known")
}

# pair PLACE LABEL DEBIAN_FILE OURS_FILE [FILTER]
pair() {
    local place=$1 label=$2 a=$3 b=$4 filter=${5:-normalise}
    total[$place]=$((${total[$place]:-0} + 1))
    if [ ! -f "$a" ] || [ ! -f "$b" ]; then
        problems+=("$place: $label: missing $([ -f "$a" ] || echo "Debian's") $([ -f "$b" ] || echo ours)")
        return
    fi
    accept_known "$label" "$a"
    a=$KNOWN
    if diff -u --label "$label, Debian's library" --label "$label, our library" \
        <("$filter" "$a") <("$filter" "$b") >"$out/diff.tmp"; then
        matched[$place]=$((${matched[$place]:-0} + 1))
    else
        problems+=("$place: $label differs")
        cat "$out/diff.tmp" >>"$out/differences.txt"
        head -n 40 "$out/diff.tmp"
    fi
    rm -f "$out/diff.tmp"
}

# ctest_pair PLACE LABEL DEBIAN_DIR OURS_DIR: every C test run in both directories.
ctest_pair() {
    local place=$1 label=$2 a=$3 b=$4 t rca rcb
    [ -f "$a/status" ] || { problems+=("$place: $label: no C test results"); return; }
    # Tests whose checks do not hold there (see dom0.sh): only their transcripts count.
    local compare_only
    compare_only=" $(cat "$a/compare-only" 2>/dev/null) "
    while read -r t rca _; do
        rcb=$(awk -v t="$t" '$1 == t { print $2 }' "$b/status" 2>/dev/null)
        [ -n "$rcb" ] || { problems+=("$place: $label $t did not run with our library"); continue; }
        if [[ "$compare_only" != *" $t "* ]]; then
            [ "$rca" = 0 ] || [ "$rca" = 77 ] || problems+=("$place: $label $t failed with Debian's library (exit $rca)")
            [ "$rcb" = 0 ] || [ "$rcb" = 77 ] || problems+=("$place: $label $t failed with our library (exit $rcb)")
        fi
        # Skipped by either (features: the reference headers lack the calls): not compared.
        [ "$rca" = 77 ] || [ "$rcb" = 77 ] && continue
        pair "$place" "$label $t" "$a/$t.txt" "$b/$t.txt" ctest_lines
    done <"$a/status"
}

: >"$out/differences.txt"
for transport in socket xenbus; do
    d=$out/dom0/$transport
    pair dom0 "scenario over $transport" "$d/scenario-debian.txt" "$d/scenario-ours.txt"
    ctest_pair dom0 "C tests over $transport:" "$d/ctest-debian" "$d/ctest-ours"
done
pair dom0 "xl create/list/destroy" "$out/dom0/toolstack-debian.txt" "$out/dom0/toolstack-ours.txt"
pair guest "guest scenario" "$out/guest/scenario-debian.txt" "$out/guest/scenario-ours.txt"
ctest_pair guest "guest C tests:" "$out/guest/ctest-debian" "$out/guest/ctest-ours"

# The toolstack on our library: each step must have worked.
for f in "$out/dom0/toolstack-ours.txt" "$out/dom0/toolstack-guest.txt"; do
    [ -f "$f" ] || continue
    bad=$(grep -c '^\[exit [1-9]' "$f")
    [ "$bad" = 0 ] || problems+=("dom0: $(basename "$f" .txt): $bad xl command(s) failed on our library")
done
grep -q '^exit 0$' "$out/dom0/xen-init-dom0.txt" 2>/dev/null ||
    problems+=("dom0: xen-init-dom0 failed on our library")

echo
echo "=== summary"
for place in dom0 guest; do
    echo "$place: ${matched[$place]:-0} of ${total[$place]:-0} comparisons matched"
done
[ $accepted = 0 ] || echo "($accepted line(s) differ on purpose: $known)"
for p in "${problems[@]}"; do echo "  $p"; done
[ -s "$out/differences.txt" ] && echo "differences: $out/differences.txt"
if [ ${#problems[@]} -eq 0 ]; then
    echo "xen-vm: PASS${elapsed:+ ($elapsed s)}"
else
    echo "xen-vm: FAIL (${#problems[@]} problem(s))${elapsed:+ ($elapsed s)}"
    exit 1
fi
