# The conformance scenario: a fixed sequence of Debian's xenstore tools and
# test-xenstore runs whose combined transcript must be identical whatever the
# library (Debian's or ours) and daemon (C, OCaml or ours).  Sourced by
# conformance.sh, which provides run, run_in, watch_during and the tools on PATH.
#
# Every step must be deterministic: no pids, timings or absolute paths of this
# machine reach the transcript.  Steps only touch /conformance, the relative
# (dom0 home) path conformance-rel, and the special watch paths.

# The root listing, minus the value of /tool/xenstored: oxenstored records the
# path of its own executable there, which depends on where this machine keeps
# the reference packages.
root_listing() { sed -E 's/^( xenstored = ).*(  \([^()]*\))$/\1<elided>\2/'; }

# A value of N bytes of the letter L.
blob() { head -c "$1" /dev/zero | tr '\0' "$2"; }

scenario() {
    section "initial state"
    run xenstore-exists /
    run xenstore-exists /tool
    run xenstore-read /tool
    run xenstore-exists /conformance

    section "write and read"
    run xenstore-write /conformance/a hello
    run xenstore-read /conformance/a
    run xenstore-read -p /conformance/a
    run xenstore-write /conformance/b one /conformance/c two /conformance/d/e/f deep
    run xenstore-read /conformance/b /conformance/c /conformance/d/e/f
    run xenstore-read /conformance/d /conformance/d/e
    run xenstore-write /conformance/a ""
    run xenstore-read /conformance/a
    run xenstore-write /conformance/a "with spaces and = signs"
    run xenstore-read /conformance/a
    run xenstore "read" /conformance/b
    run xenstore "write" /conformance/multi call
    run xenstore "read" /conformance/multi

    section "escapes and raw mode"
    run xenstore-write /conformance/esc 'tab\there\x41\\end'
    run xenstore-read /conformance/esc
    run xenstore-read -R /conformance/esc
    run xenstore-write -R /conformance/raw 'no\x41escape'
    run xenstore-read /conformance/raw
    run xenstore-read -R /conformance/raw
    run xenstore-write /conformance/nul 'a\x00b\x01\x7f\xffc'
    run xenstore-read /conformance/nul
    run_quiet xenstore-read -R /conformance/nul

    section "sizes"
    run xenstore-write /conformance/size/2048 "$(blob 2048 x)"
    run_quiet xenstore-read /conformance/size/2048
    run xenstore-write /conformance/size/4000 "$(blob 4000 y)"
    run_quiet xenstore-read /conformance/size/4000
    run xenstore-write /conformance/size/4096 "$(blob 4096 z)"
    run xenstore-write /conformance/size/5000 "$(blob 5000 w)"
    run xenstore-exists /conformance/size/5000
    run xenstore-write "/conformance/$(blob 300 p)" long-name
    run xenstore-exists "/conformance/$(blob 300 p)"
    run xenstore-write "/conformance/$(blob 3000 q)" too-long-name

    section "invalid paths"
    run xenstore-write "/conformance/bad name" 1
    run xenstore-write "/conformance/bad*name" 1
    run xenstore-write /conformance/trailing/ 1
    run xenstore-write /conformance//double 1
    run xenstore-write "" 1
    run xenstore-read /conformance/missing
    run xenstore-read /conformance/a /conformance/missing /conformance/b
    run xenstore-exists /conformance/missing
    run xenstore-exists /conformance/a /conformance/missing

    section "relative paths (dom0 home)"
    run xenstore-write conformance-rel/x relative
    run xenstore-read conformance-rel/x
    run xenstore-read /local/domain/0/conformance-rel/x
    run xenstore-list conformance-rel
    run xenstore-rm conformance-rel

    section "directories"
    run xenstore-list /conformance
    run xenstore-list -p /conformance/d
    run xenstore-list /conformance/b
    run xenstore-list /conformance/missing
    run xenstore-ls /conformance
    run xenstore-ls -f /conformance
    run xenstore-ls -p /conformance/d
    run xenstore-ls -f -p /conformance/d
    run xenstore-ls /conformance/missing

    section "permissions"
    run xenstore-write /conformance/perm/a 1 /conformance/perm/b/c 2
    run xenstore-chmod /conformance/perm/a n1 r0 w2 b3
    run xenstore-ls -p /conformance/perm
    run xenstore-chmod -r /conformance/perm b5
    run xenstore-ls -p /conformance/perm
    run xenstore-chmod /conformance/perm/a r0
    run xenstore-ls -f -p /conformance/perm
    run xenstore-chmod -u /conformance/perm/b/c n7
    run xenstore-ls -f -p /conformance/perm
    run_in root_listing xenstore-ls -p /
    run xenstore-chmod /conformance/perm/a x1
    run xenstore-chmod /conformance/perm/a n1 r2 w3 b4 n5 r6
    run xenstore-ls -f -p /conformance/perm
    run xenstore-chmod /conformance/perm/missing n0
    run xenstore-chmod /conformance/perm/a n0

    section "big directory"
    local i names=()
    for ((i = 0; i < 300; i++)); do
        names+=("/conformance/big/entry-with-a-long-name-$i" "$i")
    done
    run_quiet xenstore-write "${names[@]}"
    run_quiet xenstore-list /conformance/big
    run_quiet xenstore-ls -f /conformance/big
    run xenstore-read /conformance/big/entry-with-a-long-name-299
    run xenstore-rm /conformance/big

    section "remove"
    run xenstore-rm /conformance/c
    run xenstore-exists /conformance/c
    run xenstore-rm /conformance/c
    run xenstore-rm /conformance/d/e
    run xenstore-ls -f /conformance/d
    run xenstore-write /conformance/tidy/x/y/z 1
    run xenstore-rm -t /conformance/tidy/x/y/z
    run xenstore-exists /conformance/tidy
    run xenstore-write /conformance/tidy2/keep 1 /conformance/tidy2/x/y 1
    run xenstore-rm -t /conformance/tidy2/x/y
    run xenstore-ls -f /conformance/tidy2
    run xenstore-rm /conformance/missing/deeper
    run xenstore-rm /conformance/b /conformance/multi

    section "watches"
    watch_during 3 /conformance/w -- \
        xenstore-write /conformance/w/a 1 /conformance/w/b/c 2
    watch_during 2 /conformance/w/b -- \
        xenstore-rm /conformance/w
    local events=()
    for ((i = 0; i < 40; i++)); do events+=("/conformance/many/$i" "$i"); done
    watch_during 41 /conformance/many -- xenstore-write "${events[@]}"
    watch_during 2 conformance-relw -- xenstore-write conformance-relw/x 1
    run xenstore-rm conformance-relw
    watch_during 1 @introduceDomain --
    watch_during 1 @releaseDomain --
    watch_during 2 /conformance/perm -- \
        xenstore-chmod /conformance/perm n0

    section "control"
    run xenstore-control check
    run xenstore-control print conformance-marker
    run xenstore-control no-such-command

    section "test-xenstore"
    run test-xenstore -l
    run_in test_timings test-xenstore
    run_in test_timings test-xenstore -i 5
    run_in test_timings test-xenstore -t "ta rmw"
    run test-xenstore -r "${XS_CONF_RANDOM_SECONDS:-2}"
    run xenstore-exists xenstore-test

    section "final tree"
    run xenstore-ls -f -p /conformance
    run xenstore-rm /conformance
    run xenstore-exists /conformance

    # Left out where XS_SCENARIO_NO_PROBE is set (scripts/xen-vm over the xenbus device, where
    # its waits for events that do not come take a minute of emulated time).
    if [ -z "${XS_SCENARIO_NO_PROBE:-}" ]; then
        section "library probe (xsprobe.c)"
        # Its waits for events that do not come (5 s each) take wall-clock time that a
        # slower machine does not shorten: it gets four steps' time.
        STEP_TIMEOUT=$((STEP_TIMEOUT * 4)) run xsprobe
    fi
}
