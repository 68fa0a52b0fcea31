# The guest scenario: what an unprivileged guest does with Debian's xenstore tools and
# test-xenstore through its kernel, played with each library by guest.sh and compared line by
# line. Uses the steps of tests/reference/steps.sh; DOMID is the guest's domid. dom0 made
# $GRANTED/{rw,ro,none} for it (/xvm/<its name>: dom0.sh).

# The C tests that make sense in a guest: the others write outside a guest's home.
GUEST_CTESTS="domu linkage libhelpers"

guest_scenario() {
    local home=/local/domain/$DOMID
    section "who it is"
    run xenstore-read domid
    run xenstore-exists "$home"
    run xenstore-read name

    section "relative paths: its home"
    run xenstore-write xvm/a hello xvm/b/c deep
    run xenstore-read xvm/a xvm/b/c
    run xenstore-read "$home/xvm/a"
    run xenstore-list xvm
    run xenstore-ls -p xvm
    run xenstore-chmod xvm/a "n$DOMID" r0
    run xenstore-ls -f -p "$home/xvm"
    run xenstore-rm xvm/b
    run xenstore-exists xvm/b
    run xenstore-rm -t xvm/a

    section "outside its home"
    run xenstore-write /xvm-guest-was-here 1
    run xenstore-read /local/domain/0/name
    run xenstore-list /local/domain/0
    run xenstore-write /local/domain/0/xvm 1
    run xenstore-rm /local/domain/0
    run xenstore-chmod "$GRANTED/ro" "n$DOMID"
    run xenstore-control check

    section "what dom0 granted it"
    run xenstore-read "$GRANTED/rw" "$GRANTED/ro"
    run xenstore-read "$GRANTED/none"
    run xenstore-write "$GRANTED/rw" from-guest
    run xenstore-read "$GRANTED/rw"
    run xenstore-write "$GRANTED/ro" from-guest
    run xenstore-list "$GRANTED"

    section "watches through the kernel"
    watch_during 3 xvm/w -- xenstore-write xvm/w/a 1 xvm/w/b 2
    watch_during 2 "$home/xvm/w" -- xenstore-rm xvm/w
    watch_during 2 "$GRANTED/rw" -- xenstore-write "$GRANTED/rw" again
    watch_during 1 @releaseDomain --

    section "test-xenstore in its home"
    run test-xenstore -l
    run_in test_timings test-xenstore
    run_in test_timings test-xenstore -t "ta rmw"
    run test-xenstore -r 2
    run xenstore-exists xenstore-test

    section "library probe (xsprobe.c), unprivileged"
    # xsprobe with its nodes under /probe-guest, not dom0's /probe (run.sh). Unprivileged,
    # more of its waits for an event end with none after 5 s: it lasts 57-58 s, too close to
    # a step's minute, so it gets four steps' time, as in scenario.sh.
    STEP_TIMEOUT=$((STEP_TIMEOUT * 4)) run xsprobe-guest

    section "final tree"
    run xenstore-ls -f -p "$home/xvm"
    run xenstore-rm xvm
    run xenstore-exists xvm
}
