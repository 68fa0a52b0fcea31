#!/bin/bash
# Compares what ran inside the emulated machine (scripts/xen-vm/run.sh):
#  - within each boot, library against library: for each place (dom0, and the guests xvm-a
#    and xvm-b), every transcript made with Debian's libxenstore against the same one made
#    with ours;
#  - across the boots, daemon against daemon: every transcript of the boot on the C
#    xenstored against the same one of the boot on ours, and the hosts part's;
# line by line, after normalising what may vary from run to run (addresses, pids, timings, and
# across boots the guests' domids). Also fails on a C test that failed, an xl command that
# failed on our library, a check of the hosts part that did not hold, and, in the boot on our
# daemon, rings (`xenstore-control rings`) left behind by the guests.
#
#   scripts/xen-vm/compare.sh OUT_DIR [SECONDS_SO_FAR]
#
# OUT_DIR holds a directory per boot, named after its daemon; XEN_VM_DAEMONS says which boots
# there should be (default "c ours").
set -uo pipefail
out=${1:?usage: compare.sh OUT_DIR [SECONDS]}
elapsed=${2:-}
daemons=${XEN_VM_DAEMONS:-c ours}
guests="xvm-a xvm-b"
problems=()
lu_lines=()
declare -A matched total

# normalise FILE: what differs between runs of the same program, whatever the library.
normalise() {
    sed -E -e 's/0x[0-9a-f]{6,}/<addr>/g' -e 's/\b(pid|PID) [0-9]+/\1 <pid>/g' \
        -e 's/[0-9]+(\.[0-9]+)? ?(ns|us|µs|ms)\b/<time>/g' "$1"
}
# ctest_lines FILE: as normalise; lines about behaviour beyond the reference ("ext ") are ours
# alone.
ctest_lines() { grep -v '^ext ' "$1" | normalise /dev/stdin; }
# by_name FILTER FILE: FILTER, then each guest's domid (in the boot FILE comes from) shown as
# its name: the two guests are created at once, so which gets which domid may change. For the
# guests' transcripts (dom0's use domain numbers of their own). A domid is renamed in
# /local/domain/ID, in a permission (nID, rID, wID, bID), and as the line after
# `$ xenstore-read domid`; in a probe line, `call(...) = result`, only in the result: the
# call's text is the same in every boot (xsprobe.c sets permissions for fixed domids).
by_name() {
    local filter=$1 file=$2 boot
    boot=${file#"$out"/}
    boot=${boot%%/*}
    "$filter" "$file" | perl -e '
        my %name;
        if (open(my $ids, "<", $ARGV[0])) {
            while (<$ids>) {
                my ($n, $id) = split;
                $name{$id} = $n if defined $id && $id =~ /^\d+$/;
            }
        }
        my $perm = sub {
            $_[0] =~ s{([nrwb])(\d+)(?=[,) ]|$)}{exists $name{$2} ? "$1<$name{$2}>" : "$1$2"}ge;
        };
        my $domid_next = 0;
        while (my $l = <STDIN>) {
            chomp $l;
            if ($domid_next && $l =~ /^(\d+)$/ && exists $name{$1}) {
                $l = "<$name{$1}>";
            }
            $domid_next = $l eq "\$ xenstore-read domid";
            $l =~ s{/local/domain/(\d+)(?=[/ ]|$)}{exists $name{$1} ? "/local/domain/<$name{$1}>" : $&}ge;
            if ($l =~ /^([a-z_]+\(.*?\) = )(.*)$/) {
                my ($call, $result) = ($1, $2);
                $perm->($result);
                $l = $call . $result;
            } else {
                $perm->($l);
            }
            print "$l\n";
        }' "$out/$boot/dom0/domids"
}
guest_lines() { by_name normalise "$1"; }
guest_ctest_lines() { by_name ctest_lines "$1"; }

# Differences we mean to have: known-differences.txt lists, per transcript, a line of the
# reference side (Debian's library, or the C daemon), normalised, and the line or lines (\n
# between them) ours gives instead; the reference side is rewritten accordingly before
# comparing. Library differences are explained in docs/upstream-differences.md, daemon
# differences in docs/daemon-differences.md.
known=$(dirname "$0")/known-differences.txt
accepted=0
# accept_known LABEL FILE: FILE (the reference side, normalised) with those lines rewritten.
accept_known() {
    local label=$1 file=$2 l d o
    while IFS=$'\t' read -r l d o; do
        [ "$l" = "$label" ] || continue
        grep -qxF -- "$d" "$file" || continue
        # awk turns the \n of -v values into new lines.
        awk -v d="$d" -v o="$o" '$0 == d { print o; next } { print }' "$file" >"$file.tmp" &&
            mv "$file.tmp" "$file"
        accepted=$((accepted + 1))
    done < <(grep -v '^#' "$known")
}

# The two sides of the comparisons being made, for the diffs.
side_a="Debian's library" side_b="our library"

# pair PLACE LABEL REFERENCE_FILE OURS_FILE [FILTER]
pair() {
    local place=$1 label=$2 a=$3 b=$4 filter=${5:-normalise}
    total[$place]=$((${total[$place]:-0} + 1))
    if [ ! -f "$a" ] || [ ! -f "$b" ]; then
        problems+=("$place: $label: missing $([ -f "$a" ] || echo "with $side_a") $([ -f "$b" ] || echo "with $side_b")")
        return
    fi
    "$filter" "$a" >"$out/a.tmp"
    "$filter" "$b" >"$out/b.tmp"
    accept_known "$label" "$out/a.tmp"
    if diff -u --label "$label, $side_a" --label "$label, $side_b" "$out/a.tmp" "$out/b.tmp" >"$out/diff.tmp"; then
        matched[$place]=$((${matched[$place]:-0} + 1))
    else
        problems+=("$place: $label differs")
        cat "$out/diff.tmp" >>"$out/differences.txt"
        head -n 40 "$out/diff.tmp"
    fi
    rm -f "$out/diff.tmp" "$out/a.tmp" "$out/b.tmp"
}

# ctest_pair PLACE LABEL REFERENCE_DIR OURS_DIR [FILTER]: every C test run in both directories.
ctest_pair() {
    local place=$1 label=$2 a=$3 b=$4 filter=${5:-ctest_lines} t rca rcb
    [ -f "$a/status" ] || { problems+=("$place: $label no C test results"); return; }
    # Tests whose checks do not hold there (see dom0.sh): only their transcripts count.
    local compare_only
    compare_only=" $(cat "$a/compare-only" 2>/dev/null) "
    while read -r t rca _; do
        rcb=$(awk -v t="$t" '$1 == t { print $2 }' "$b/status" 2>/dev/null)
        [ -n "$rcb" ] || { problems+=("$place: $label $t did not run with $side_b"); continue; }
        # Exit statuses are judged within each boot; across the boots, only that they agree.
        if [ -n "$across" ]; then
            [ "$rca" = "$rcb" ] || problems+=("$place: $label $t exits $rca with $side_a, $rcb with $side_b")
        elif [[ "$compare_only" != *" $t "* ]]; then
            [ "$rca" = 0 ] || [ "$rca" = 77 ] || problems+=("$place: $label $t failed with $side_a (exit $rca)")
            [ "$rcb" = 0 ] || [ "$rcb" = 77 ] || problems+=("$place: $label $t failed with $side_b (exit $rcb)")
        fi
        # Skipped by either (features: the reference headers lack the calls): not compared.
        [ "$rca" = 77 ] || [ "$rcb" = 77 ] && continue
        pair "$place" "$label $t" "$a/$t.txt" "$b/$t.txt" "$filter"
    done <"$a/status"
}

# ---------------------------------------------------------------- within each boot
: >"$out/differences.txt"
across=
for d in $daemons; do
    o=$out/$d
    if [ -f "$o/boot-failed" ]; then
        problems+=("$d: $(cat "$o/boot-failed")")
    fi
    while IFS= read -r line; do problems+=("$d: $line"); done < <(cat "$o/boot-notes" 2>/dev/null)
    for transport in socket xenbus; do
        t=$o/dom0/$transport
        pair "$d: dom0" "scenario over $transport" "$t/scenario-debian.txt" "$t/scenario-ours.txt"
        ctest_pair "$d: dom0" "C tests over $transport:" "$t/ctest-debian" "$t/ctest-ours"
    done
    pair "$d: dom0" "xl create/list/destroy" "$o/dom0/toolstack-debian.txt" "$o/dom0/toolstack-ours.txt"
    for g in $guests; do
        pair "$d: $g" "guest scenario" "$o/$g/scenario-debian.txt" "$o/$g/scenario-ours.txt"
        ctest_pair "$d: $g" "guest C tests:" "$o/$g/ctest-debian" "$o/$g/ctest-ours"
    done

    # What had to work, whatever it is compared with.
    grep -q '^exit 0$' "$o/dom0/launch-xenstore.txt" 2>/dev/null ||
        problems+=("$d: launch-xenstore did not start the daemon")
    grep -q '^exit 0$' "$o/dom0/xen-init-dom0.txt" 2>/dev/null ||
        problems+=("$d: xen-init-dom0 failed on our library")
    for f in "$o/dom0/toolstack-ours.txt" "$o/dom0/hosts/hosts.txt"; do
        [ -f "$f" ] || continue
        bad=$(grep -c '^\[exit [1-9]' "$f")
        [ "$bad" = 0 ] || problems+=("$d: $(basename "$f" .txt): $bad xl or xenstore command(s) failed")
    done
    if [ -f "$o/dom0/hosts/checks.txt" ]; then
        while read -r line; do problems+=("$d: hosts: $line"); done < <(grep '^FAIL' "$o/dom0/hosts/checks.txt")
    else
        problems+=("$d: hosts: no checks")
    fi
    # The live updates made while the guests ran (dom0.sh, live_updates): shown in the summary.
    lu=$o/dom0/hosts/live-update.txt
    if [ -f "$lu" ]; then
        lu_lines+=("$d: live updates with the guests running: $(grep -c ': exit 0,' "$lu") of $(grep -c '^update ' "$lu") succeeded; time to OK, longest: $(sed -n 's/^update [0-9]*: exit 0, \([0-9]*\) ms.*/\1/p' "$lu" | sort -n | tail -n 1) ms")
    fi
    # Our daemon reports the rings it serves: with both guests running, dom0's and theirs;
    # once they are gone, dom0's alone, and one page mapped (dom0's ring).
    if [ "$d" = ours ]; then
        r=$o/dom0/hosts
        want=$(printf '0\n%s\n' "$(awk '{ print $2 }' "$o/dom0/domids" 2>/dev/null)" | sort -n | tr '\n' ' ')
        have=$(awk '$1 == "domid" { print $2 }' "$r/rings-running.txt" 2>/dev/null | sort -n | tr '\n' ' ')
        [ "$have" = "$want" ] ||
            problems+=("ours: hosts: xenstore-control rings with the guests running lists domains '$have', not '$want' (it began '$(head -n 1 "$r/rings-running.txt" 2>/dev/null)')")
        have=$(awk '$1 == "domid" { print $2 }' "$r/rings-after.txt" 2>/dev/null | tr '\n' ' ')
        [ "$have" = "0 " ] ||
            problems+=("ours: hosts: xenstore-control rings after the guests lists domains '$have', not '0 '")
        have=$(grep -v '^$' "$r/rings-after.txt" 2>/dev/null | tail -n 1)
        [ "$have" = "mappings 1" ] ||
            problems+=("ours: hosts: xenstore-control rings after the guests ends '$have', not 'mappings 1'")
    fi
done

# ---------------------------------------------------------------- across the boots
if [[ " $daemons " == *" c "* ]] && [[ " $daemons " == *" ours "* ]]; then
    across="c against ours"
    side_a="the C xenstored" side_b="our xenstored"
    for lib in debian ours; do
        for transport in socket xenbus; do
            f=dom0/$transport/scenario-$lib.txt
            pair "$across: dom0" "daemons: $f" "$out/c/$f" "$out/ours/$f"
            f=dom0/$transport/ctest-$lib
            ctest_pair "$across: dom0" "daemons: $f" "$out/c/$f" "$out/ours/$f"
        done
        f=dom0/toolstack-$lib.txt
        pair "$across: dom0" "daemons: $f" "$out/c/$f" "$out/ours/$f"
        for g in $guests; do
            f=$g/scenario-$lib.txt
            pair "$across: $g" "daemons: $f" "$out/c/$f" "$out/ours/$f" guest_lines
            f=$g/ctest-$lib
            ctest_pair "$across: $g" "daemons: $f" "$out/c/$f" "$out/ours/$f" guest_ctest_lines
        done
    done
    # dom0 showed the guests' domids by name already.
    f=dom0/hosts/hosts.txt
    pair "$across: dom0" "daemons: $f" "$out/c/$f" "$out/ours/$f"
fi

# ---------------------------------------------------------------- summary
echo
echo "=== summary"
# count PREFIX: the comparisons of the places whose name starts with PREFIX, matched and made.
count() {
    local p m=0 n=0
    for p in "${!total[@]}"; do
        [[ "$p" == "$1"* ]] || continue
        m=$((m + ${matched[$p]:-0}))
        n=$((n + ${total[$p]}))
    done
    echo "$m of $n comparisons matched"
}
for d in $daemons ${across:+"$across"}; do
    for place in dom0 $guests; do
        echo "$d: $place: ${matched[$d: $place]:-0} of ${total[$d: $place]:-0} comparisons matched"
    done
done
for d in $daemons; do echo "boot on the $d xenstored: $(count "$d: ")"; done
for l in "${lu_lines[@]}"; do echo "$l"; done
[ -z "$across" ] || echo "across the boots ($across): $(count "$across: ")"
[ $accepted = 0 ] || echo "($accepted line(s) differ on purpose: $known)"
for p in "${problems[@]}"; do echo "  $p"; done
[ -s "$out/differences.txt" ] && echo "differences: $out/differences.txt"
if [ ${#problems[@]} -eq 0 ]; then
    echo "xen-vm: PASS${elapsed:+ ($elapsed s)}"
else
    echo "xen-vm: FAIL (${#problems[@]} problem(s))${elapsed:+ ($elapsed s)}"
    exit 1
fi
