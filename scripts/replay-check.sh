#!/usr/bin/env bash
# The domain-creation replay (bench/domain_create.c, bench/domain_create.trace) still works:
#  1. bench/trace2replay.py turns the checked-in recording into exactly the checked-in trace;
#  2. domain_create, built against our library, replays it without an error for 1 domain and
#     for 10 at once (20 in all), on our embedded store and against our xenstored, and the
#     trace's cleanup leaves none of the replayed domains' nodes behind.
# Behaviour only: the figures it prints are not judged (bench/run.py domains measures them).
# Needs `cargo build --release` done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
trace=bench/domain_create.trace
lib=$root/target/release

echo "-- converter output against $trace"
bench/trace2replay.py bench/recorded/xl-create-pv.trace | diff -u "$trace" - ||
    { echo "FAIL: $trace is not what bench/trace2replay.py makes of the recording"; exit 1; }

work=$(mktemp -d)
rundir=
cleanup() {
    [ -n "$rundir" ] && scripts/reference/daemon.sh stop "$rundir" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -Wall -Werror -I include -o "$work/domain_create" bench/domain_create.c \
    -L "$lib" -lxenstore -lpthread
gcc -O2 -Wall -Werror -I include -o "$work/leftover" -x c - -L "$lib" -lxenstore <<'EOF'
/* Prints the replayed domains' homes (domain ids 1000 and up) still in the store. */
#include <xenstore.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    struct xs_handle *h = xs_open(0);
    unsigned int n;
    char **dir = h ? xs_directory(h, XBT_NULL, "/local/domain", &n) : NULL;
    if (!dir)
        return 2;
    for (unsigned int i = 0; i < n; i++)
        if (atoi(dir[i]) >= 1000)
            printf("left behind: /local/domain/%s\n", dir[i]);
    free(dir);
    xs_close(h);
    return 0;
}
EOF

# replay WHERE: both sizes, then what is left (the embedded store lives in one process, so
# there the check is only that the runs end without an error).
replay() {
    local where=$1 sizes out
    for sizes in "1 3" "10 20"; do
        # shellcheck disable=SC2086 # N and TOTAL, two arguments
        out=$(env LD_LIBRARY_PATH="$lib" timeout 120 "$work/domain_create" "$trace" $sizes) ||
            { echo "FAIL: $where: domain_create $trace $sizes"; exit 1; }
        echo "$where, N TOTAL = $sizes: $out"
    done
}

echo "-- replay on our embedded store"
XENSTORE_EMBEDDED=1 replay embedded

echo "-- replay against our xenstored"
rundir=$work/run
mkdir "$rundir"
XENSTORED_PATH=$(scripts/reference/daemon.sh start ours "$rundir" | tail -1)
export XENSTORED_PATH
replay "our xenstored"
left=$(LD_LIBRARY_PATH="$lib" "$work/leftover")
[ -z "$left" ] || { echo "FAIL: the cleanup left nodes behind:"; echo "$left"; exit 1; }
echo "replay-check: PASS"
