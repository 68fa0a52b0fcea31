# The guest's part of scripts/xen-vm/run.sh (run by /init, with bash): an unprivileged domain
# created by xl, reaching XenStore only through its kernel's /dev/xen/xenbus. Plays the guest
# scenario and the C tests that make sense for a guest with each library, then prints the
# results on its console, where dom0 picks them up from xenconsoled's log.
. /xvm/lib.sh
. /xvm/scenario-guest.sh
OUT=/out/guest
mkdir -p "$OUT"
[ -e /dev/xen/xenbus ] || progress "guest: no /dev/xen/xenbus"
DOMID=$(LD_LIBRARY_PATH=$REF_LIB xenstore-read domid)
progress "guest: domain $DOMID"
export XST_DOMU=1
for lib in debian ours; do
    progress "guest: scenario and C tests, $lib library"
    # Each library finds what dom0 granted as dom0 left it.
    LD_LIBRARY_PATH=$REF_LIB xenstore-write /xvm/granted/rw from-dom0
    play guest_scenario "$lib" "$OUT/scenario-$lib.txt"
    ctests "$lib" "$OUT/ctest-$lib" $GUEST_CTESTS
done
send_back guest
# dom0 shuts the guest down with xl shutdown once it has the results.
while :; do sleep 60; done
