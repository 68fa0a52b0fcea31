# The guests' part of scripts/xen-vm/run.sh (run by /init, with bash): an unprivileged domain
# created by xl (dom0 runs two at once, xvm-a and xvm-b), reaching XenStore only through its
# kernel's /dev/xen/xenbus. Plays the guest scenario and the C tests that make sense for a guest
# with each library, then prints the results on its console, where dom0 picks them up from
# xenconsoled's log, and then a marker that dom0 reads through `xl console`.
. /xvm/lib.sh
. /xvm/scenario-guest.sh
[ -e /dev/xen/xenbus ] || progress "guest: no /dev/xen/xenbus"
# The guest's own steps use Debian's library; play and ctests choose theirs.
export LD_LIBRARY_PATH=$REF_LIB
DOMID=$(xenstore-read domid)
NAME=$(xenstore-read name)
# What dom0 made for this guest alone (the two run at once).
GRANTED=/xvm/$NAME
OUT=/out/$NAME
mkdir -p "$OUT"
progress "$NAME: domain $DOMID"
wait_turn() {
    for _ in $(seq 600); do
        [ "$(xenstore-read /xvm/turn)" = "$NAME" ] && return
        sleep 0.5
    done
    progress "$NAME: the other guest kept the turn for 5 minutes: going on"
}
export XST_DOMU=1
for lib in debian ours; do
    progress "$NAME: scenario and C tests, $lib library"
    # Each library finds what dom0 granted as dom0 left it.
    xenstore-write "$GRANTED/rw" from-dom0
    play guest_scenario "$lib" "$OUT/scenario-$lib.txt"
    for t in $GUEST_CTESTS; do
        if [ "$t" = domu ]; then
            # domu writes /xvm/granted/rw and reads it back, and both guests share it: they take
            # turns (dom0 hands the first to xvm-a; each passes it on to the other when done).
            wait_turn
            ctests "$lib" "$OUT/ctest-$lib" "$t"
            xenstore-write /xvm/turn "$(xenstore-read "$GRANTED/next")"
        else
            ctests "$lib" "$OUT/ctest-$lib" "$t"
        fi
    done
done
send_back "$NAME"
# dom0 reads this through `xl console`, then shuts the guest down (xl shutdown or destroy).
while :; do
    echo "XVM-CONSOLE $NAME done" >/dev/console
    sleep 1
done
