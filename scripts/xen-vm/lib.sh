# Shared by dom0.sh and guest.sh, the scripts that run inside the emulated machine (see run.sh).
# Everything they produce goes under /out, which dom0 sends back to the host.
. /xvm/env
export PATH=$TOOLS:/bin:/sbin
. /xvm/steps.sh
. /xvm/payload.sh

# A progress line on the console, where run.sh shows it, with the seconds since boot.
progress() { echo "XVM: [$(cut -d' ' -f1 /proc/uptime)] $*" >/dev/console; }
# Steps are slower under emulation: a hang is declared after a minute, and shown at once.
STEP_TIMEOUT=60
eval "transcript_$(declare -f step)"
step() {
    transcript_step "$@"
    local rc=$?
    [ $rc = 124 ] || [ $rc = 137 ] && progress "  timed out: $*"
    return $rc
}
# Each section of a scenario shows on the console too (not in the transcript).
eval "transcript_$(declare -f section)"
section() {
    progress "  $*"
    transcript_section "$@"
}

# The library path that makes LIB's libxenstore.so.4 the one loaded: Debian's directory also
# holds the other Xen libraries some programs need (xenstore-control: libxenctrl).
libpath() {
    case $1 in
    debian) echo "$REF_LIB" ;;
    ours) echo "$OURS_LIB:$REF_LIB" ;;
    esac
}
# The C tests as built against LIB.
ctdir() {
    case $1 in
    debian) echo "$CT_reference" ;;
    ours) echo "$CT_ours" ;;
    esac
}

# play FUNCTION LIB OUT: runs the scenario FUNCTION with LIB's libxenstore, transcript to OUT.
play() {
    local fn=$1 lib=$2 out=$3
    mkdir -p "$(dirname "$out")"
    CUR=$(mktemp -d)
    (
        export LD_LIBRARY_PATH
        LD_LIBRARY_PATH=$(libpath "$lib")
        timeouts=0
        "$fn"
    ) >"$out" 2>&1
    rm -rf "$CUR"
}

# ctests LIB DIR TEST...: each C test program as built against LIB, run with LIB; its
# transcript in DIR/TEST.txt, its exit status in DIR/status.
ctests() {
    local lib=$1 dir=$2 t rc t0
    shift 2
    mkdir -p "$dir"
    for t in "$@"; do
        t0=$(cut -d' ' -f1 /proc/uptime)
        LD_LIBRARY_PATH=$(libpath "$lib") timeout -k 2 180 "$(ctdir "$lib")/$t" >"$dir/$t.txt" 2>&1
        rc=$?
        [ $rc = 0 ] || [ $rc = 77 ] || progress "  C test $t failed with the $lib library (exit $rc)"
        echo "$t $rc" >>"$dir/status"
        echo "$t $t0 $(cut -d' ' -f1 /proc/uptime)" >>"$dir/times"
    done
}
