#!/bin/bash
# Memory and thread checks of our libxenstore, through the C test programs (c-tests/).
#
#   scripts/memcheck.sh [--daemon ours|cxenstored|oxenstored] [--no-tsan] [--rust-tsan]
#                       [--only "basic stress ..."]
#
# 1. valgrind memcheck. Builds our library, installs it into build/memcheck/prefix
#    (scripts/install.sh), configures and builds the C suite with CMake + pkg-config as
#    c-tests/run.sh does (build/memcheck/build), starts a daemon (scripts/reference/daemon.sh,
#    ours by default) and runs every C test program under
#        valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect
#                 --error-exitcode=99
#    A program passes when its own checks pass (exit 0; 77 means skipped) and valgrind finds no
#    invalid read or write, no use of uninitialised memory, no bad free and no definite or
#    indirect leak. No suppression is used, except for the fork program, whose children
#    inherit memory that belongs to the parent's watch thread (scripts/memcheck-fork.supp says
#    why). The stress program runs with XST_STRESS_ROUNDS=100 XST_STRESS_EVENTS=300. First, a
#    canary program with a planted over-read and leak of library blocks must be caught.
#
# 2. ThreadSanitizer, instead of helgrind. Helgrind (and DRD) only understand pthread locks; the
#    library's locks are parking_lot's (atomics + futex), so helgrind flags every access they
#    guard: about 230,000 "possible data race" reports in one run of the stress program, all of
#    them of that kind, which would bury a real one. So the library is rebuilt with nightly
#    Rust's -Zsanitizer=thread, with the standard library rebuilt the same way (-Zbuild-std, so
#    that every lock and atomic in the process is visible to TSan), the threaded C programs
#    (threads, watches, stress) are compiled with -fsanitize=thread and linked with LLVM's TSan
#    runtime from that toolchain, and each is run against the daemon: any TSan report with a
#    frame in the library fails it (a report about the test program's own variables, with no
#    library frame in either stack, is shown as a note).
#    A canary program that races with the library on purpose must be reported first, proving
#    that TSan sees the library's accesses. Needs the nightly toolchain with rust-src (the first
#    build takes several minutes; later runs reuse it); without it the step is reported as SKIP.
#    --no-tsan skips it. --rust-tsan also runs the Rust fault and stress tests
#    (tests/fault_*.rs, tests/stress_*.rs: many threads on one handle, connections dying under
#    them) built the same way, daemon included; any TSan report fails (slow: another
#    -Zbuild-std build the first time).
#
# Output: one line per program and tool, `PASS <tool>/<program>`, `FAIL ...` (with the tool's
# summary and the log's path) or `SKIP ...`, then a last line `N passed, N failed`.
# Exit status 0 only if nothing failed. Work files and logs: build/memcheck (or $XS_MEMCHECK_WORK).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${XS_MEMCHECK_WORK:-$root/build/memcheck}
daemon=ours
tsan=1
rust_tsan=0
only=

while [ $# -gt 0 ]; do
    case $1 in
    --daemon) daemon=${2:?}; shift 2 ;;
    --no-tsan) tsan=0; shift ;;
    --rust-tsan) rust_tsan=1; shift ;;
    --only) only=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--daemon ours|cxenstored|oxenstored] [--no-tsan] [--rust-tsan] [--only \"prog ...\"]" >&2; exit 64 ;;
    esac
done

say() { printf '\n=== %s ===\n' "$*"; }
passed=0 failed=0
result() { # result PASS|FAIL|SKIP name details
    echo "$1 $2${3:+: $3}"
    case $1 in PASS) passed=$((passed + 1)) ;; FAIL) failed=$((failed + 1)) ;; esac
}
finish() {
    echo
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit $?
}
die() { # die step why: one failure, then the summary
    result FAIL "$1" "$2"
    finish
}

# ---- tools ----
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v cmake >/dev/null || need+=(cmake)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    [ "$(id -u)" = 0 ] || die setup "missing ${need[*]} and not root: install them first"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${need[@]}"; then
        { apt-get update -q && apt-get install -y -q "${need[@]}"; } || die setup "apt-get install ${need[*]} failed"
    fi
fi

mkdir -p "$work/logs"
rm -f "$work"/logs/*
rundir=$work/run
cleanup() { "$root/scripts/reference/daemon.sh" stop "$rundir" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# ---- build: library, daemon, C programs ----
say "building the library and the C test programs"
(cd "$root" && cargo build --release --lib --bin xenstored) >"$work/logs/cargo.log" 2>&1 ||
    die build "cargo build failed (log: $work/logs/cargo.log)"
rm -rf "$work/prefix"
XS_NO_BUILD=1 "$root/scripts/install.sh" "$work/prefix" >"$work/logs/install.log" 2>&1 ||
    die build "scripts/install.sh failed (log: $work/logs/install.log)"
cmake -S "$root/c-tests" -B "$work/build" -DXENSTORE_PC_PATH="$work/prefix/lib/pkgconfig" \
    -DXST_TRANSCRIPT_DIR="$work/transcripts" >"$work/logs/cmake.log" 2>&1 ||
    die build "cmake configure failed (log: $work/logs/cmake.log)"
cmake --build "$work/build" -j 2 >>"$work/logs/cmake.log" 2>&1 ||
    die build "building the C programs failed (log: $work/logs/cmake.log)"

# The programs, as CTest lists them (so new ones are picked up), with their paths.
mapfile -t programs < <(cd "$work/build" && ctest -N | sed -n 's/^ *Test *#[0-9]*: *//p')
[ ${#programs[@]} -gt 0 ] || die build "ctest lists no test programs"
if [ -n "$only" ]; then
    mapfile -t programs < <(printf '%s\n' "${programs[@]}" | grep -xF -f <(tr ' ' '\n' <<<"$only"))
fi
program_path() {
    find "$work/build" -type f -name "$1" -perm -u+x | head -n 1
}

[ "$daemon" = ours ] || "$root/scripts/reference/fetch.sh" >"$work/logs/fetch.log" 2>&1 ||
    die daemon "fetching the reference packages failed (log: $work/logs/fetch.log)"
"$root/scripts/reference/daemon.sh" stop "$rundir" >/dev/null 2>&1 || true
socket=$("$root/scripts/reference/daemon.sh" start "$daemon" "$rundir" 2>"$work/logs/daemon.log") ||
    die daemon "could not start $daemon (log: $work/logs/daemon.log)"

# ---- 1. memcheck ----
say "valgrind memcheck, daemon: $daemon"
vg=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
    --track-origins=yes --num-callers=40 --trace-children=no)
# Canary: a program that leaks one xs_read result and reads one byte past another. Unless
# valgrind reports both (the blocks come from the library), a clean run below proves nothing.
mkdir -p "$work/canary"
cat >"$work/canary/leak.c" <<'CANARY'
#include <stdio.h>
#include <stdlib.h>
#include <xenstore.h>
int main(void)
{
	struct xs_handle *h = xs_open(0);
	unsigned int len;
	char *v;

	if (!h || !xs_write(h, XBT_NULL, "/memcheck-canary", "abc", 3))
		return 2;
	v = xs_read(h, XBT_NULL, "/memcheck-canary", &len);
	if (!v)
		return 2;
	printf("%d\n", v[len + 1]); /* one past the NUL the library adds */
	free(v);
	v = xs_read(h, XBT_NULL, "/memcheck-canary", &len); /* never freed */
	xs_rm(h, XBT_NULL, "/memcheck-canary");
	v = NULL;
	xs_close(h);
	return 0;
}
CANARY
log=$work/logs/memcheck-canary
if ! cc -g -O0 -I"$work/prefix/include" -o "$work/canary/leak" "$work/canary/leak.c" \
        -L"$work/prefix/lib" -Wl,-rpath,"$work/prefix/lib" -lxenstore >"$log.build.log" 2>&1; then
    result FAIL memcheck/canary "does not build (log: $log.build.log)"
else
    XENSTORED_PATH=$socket timeout 120 "${vg[@]}" --log-file="$log.log" "$work/canary/leak" >"$log.out" 2>&1
    rc=$?
    if [ $rc = 99 ] && grep -q 'Invalid read of size 1' "$log.log" &&
       grep -q 'definitely lost: 4 bytes in 1 blocks' "$log.log"; then
        result PASS memcheck/canary "a planted over-read and a leaked xs_read block are both reported"
    else
        result FAIL memcheck/canary "valgrind missed the planted errors (exit $rc; log: $log.log)"
    fi
fi

for t in "${programs[@]}"; do
    exe=$(program_path "$t")
    [ -n "$exe" ] || { result FAIL "memcheck/$t" "program not built"; continue; }
    log=$work/logs/memcheck-$t
    supp=()
    # Children of fork report memory of the parent's watch thread (see the file); their own
    # logs are kept apart (%p) so the parent's is read on its own.
    [ "$t" = fork ] && supp=(--suppressions="$here/memcheck-fork.supp")
    # Guest handles exist only on the embedded store: run that program there.
    embedded=
    [ "$t" = guest ] && embedded=1
    start=$SECONDS
    (cd "$(dirname "$exe")" &&
        XENSTORE_EMBEDDED=$embedded XENSTORED_PATH=$socket XST_TRANSCRIPT_DIR="$work/transcripts" \
        XST_STRESS_ROUNDS=100 XST_STRESS_EVENTS=300 \
        timeout 300 "${vg[@]}" "${supp[@]}" --log-file="$log.%p.log" "$exe") >"$log.out" 2>&1
    rc=$?
    took=$((SECONDS - start))
    errors=$(cat "$log".*.log 2>/dev/null | sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' |
             awk '{s += $1} END {print s + 0}')
    suppressed=$(cat "$log".*.log 2>/dev/null | sed -n 's/.*(suppressed: \([0-9]*\) from.*/\1/p' |
                 awk '{s += $1} END {print s + 0}')
    leaks=$(cat "$log".*.log 2>/dev/null | grep -E '(definitely|indirectly) lost: [1-9]' | head -n 2 |
            sed 's/^==[0-9]*== *//' | tr '\n' ';')
    case $rc in
    0) result PASS "memcheck/$t" "0 valgrind errors, no leaks, program checks passed${supp:+ ($suppressed leak reports of forked children suppressed, see scripts/memcheck-fork.supp)} (${took}s)" ;;
    77) echo "SKIP memcheck/$t: the program skipped itself ($(grep -m1 '^skipped:' "$log.out"))" ;;
    99) result FAIL "memcheck/$t" "$errors valgrind errors ${leaks:+($leaks) }(logs: $log.*.log)" ;;
    124) result FAIL "memcheck/$t" "timed out after 300 s (logs: $log.*)" ;;
    *) result FAIL "memcheck/$t" "exit $rc: $(grep -m1 'FAIL' "$log.out") ($errors valgrind errors; logs: $log.*)" ;;
    esac
done

# ---- 2. ThreadSanitizer ----
say "ThreadSanitizer, daemon: $daemon"
tsan_programs=(threads watches stress)
tsan_target=$work/tsan-target
tsan_lib=$tsan_target/x86_64-unknown-linux-gnu/release/libxenstore.so
if [ $tsan = 0 ]; then
    for t in "${tsan_programs[@]}"; do echo "SKIP tsan/$t: --no-tsan"; done
elif ! rustup run nightly rustc --version >/dev/null 2>&1 ||
     [ ! -d "$(rustup run nightly rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ]; then
    for t in "${tsan_programs[@]}"; do echo "SKIP tsan/$t: no nightly Rust toolchain with rust-src"; done
else
    echo "building the library with -Zsanitizer=thread (nightly, -Zbuild-std; log: $work/logs/tsan-build.log)"
    if ! (cd "$root" && RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR="$tsan_target" \
            cargo +nightly build -Zbuild-std --target x86_64-unknown-linux-gnu --release --lib) \
            >"$work/logs/tsan-build.log" 2>&1; then
        result FAIL tsan/build "the TSan build of the library failed (log: $work/logs/tsan-build.log)"
    else
        # The programs load it by its SONAME, from a directory of its own.
        mkdir -p "$work/tsan/lib" "$work/tsan/obj"
        cp -f "$tsan_lib" "$work/tsan/lib/libxenstore.so.4"
        ln -sfn libxenstore.so.4 "$work/tsan/lib/libxenstore.so"
        # One TSan runtime for the whole process, and it must be LLVM's: the library's code
        # calls __tsan_memcpy and friends, which GCC's libtsan lacks. So the C code is
        # instrumented by cc -fsanitize=thread but linked with the runtime shipped with nightly
        # Rust, exported (-rdynamic) for the library to bind to.
        rt=$(rustup run nightly rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/lib/librustc-nightly_rt.tsan.a
        tsan_build() { # tsan_build NAME SOURCE...: builds $work/tsan/NAME
            local name=$1 src objs=()
            shift
            for src in "$@"; do
                objs+=("$work/tsan/obj/$name-$(basename "$src" .c).o")
                cc -fsanitize=thread -g -O1 -D_GNU_SOURCE -Wall -I"$work/prefix/include" \
                    -I"$root/c-tests" -c "$src" -o "${objs[-1]}" || return 1
            done
            cc -o "$work/tsan/$name" "${objs[@]}" -Wl,--whole-archive "$rt" -Wl,--no-whole-archive \
                -rdynamic -L"$work/tsan/lib" -Wl,-rpath,"$work/tsan/lib" -lxenstore -lpthread -ldl -lm -lrt
        }
        tsan_env=(env XENSTORED_PATH="$socket" TSAN_OPTIONS="exitcode=66 halt_on_error=0 second_deadlock_stack=1")

        # Canary: a program that races with the library on purpose (a thread scribbles on the
        # buffer xs_write is reading). Unless TSan reports it, with a frame in the library,
        # TSan is not seeing the library and a clean run below would prove nothing.
        cat >"$work/tsan/canary.c" <<'CANARY'
#include <pthread.h>
#include <xenstore.h>
static char buf[64] = "canary";
static volatile int stop;
static void *scribble(void *arg)
{
	(void)arg;
	for (int i = 0; !stop; i++)
		buf[1] = (char)('a' + i % 26);
	return NULL;
}
int main(void)
{
	struct xs_handle *h = xs_open(0);
	pthread_t t;

	if (!h)
		return 2;
	pthread_create(&t, NULL, scribble, NULL);
	for (int i = 0; i < 200; i++)
		xs_write(h, XBT_NULL, "/tsan-canary", buf, 8);
	stop = 1;
	pthread_join(t, NULL);
	xs_rm(h, XBT_NULL, "/tsan-canary");
	xs_close(h);
	return 0;
}
CANARY
        log=$work/logs/tsan-canary
        if ! tsan_build canary "$work/tsan/canary.c" >"$log.build.log" 2>&1; then
            result FAIL tsan/canary "does not build (log: $log.build.log)"
        else
            timeout 120 "${tsan_env[@]}" "$work/tsan/canary" >"$log.out" 2>&1
            if grep -q 'libxenstore.so.4' "$log.out" && grep -q '^WARNING: ThreadSanitizer: data race' "$log.out"; then
                result PASS tsan/canary "a planted race with the library is reported, with the library's frames"
            else
                result FAIL tsan/canary "the planted race was not reported: TSan does not see the library (log: $log.out)"
            fi
        fi

        for t in "${tsan_programs[@]}"; do
            if [ -n "$only" ] && ! grep -qxF "$t" <(tr ' ' '\n' <<<"$only"); then continue; fi
            src=$root/c-tests/$t.c
            [ -f "$src" ] || src=$root/c-tests/$t/$t.c
            log=$work/logs/tsan-$t
            if ! tsan_build "$t" "$src" "$root/c-tests/common/xst.c" >"$log.build.log" 2>&1; then
                result FAIL "tsan/$t" "does not build (log: $log.build.log)"
                continue
            fi
            start=$SECONDS
            XST_STRESS_ROUNDS=200 XST_STRESS_EVENTS=500 timeout 300 "${tsan_env[@]}" "$work/tsan/$t" \
                >"$log.out" 2>&1
            rc=$?
            took=$((SECONDS - start))
            # Reports with a frame in the library, and reports about the test program's own
            # variables only (no library frame in either stack: not the library's business,
            # shown as a note).
            read -r lib_reports own_reports < <(awk '
                /^WARNING: ThreadSanitizer/ { inrep = 1; lib = 0 }
                inrep && /libxenstore\.so/ { lib = 1 }
                inrep && /^SUMMARY: ThreadSanitizer/ { inrep = 0; if (lib) l++; else o++ }
                END { print l + 0, o + 0 }' "$log.out")
            own=
            if [ "$own_reports" != 0 ]; then
                own="; note: $own_reports report(s) about the test program's own variables, no library frame: $(grep -m1 '^SUMMARY: ThreadSanitizer' "$log.out" | sed 's/^SUMMARY: ThreadSanitizer: //; s|'"$root"'/||')"
            fi
            if [ $rc != 0 ] && [ $rc != 66 ]; then
                result FAIL "tsan/$t" "exit $rc: $(grep -m1 'FAIL' "$log.out") (log: $log.out)"
            elif [ "$lib_reports" != 0 ]; then
                result FAIL "tsan/$t" "$lib_reports ThreadSanitizer report(s) involving the library (log: $log.out)$own"
            elif grep -q '^FAIL' "$log.out"; then
                result FAIL "tsan/$t" "program check failed: $(grep -m1 '^FAIL' "$log.out") (log: $log.out)"
            else
                result PASS "tsan/$t" "no ThreadSanitizer report involving the library, program checks passed (${took}s)$own"
            fi
        done
    fi
fi

if [ $tsan = 1 ] && [ $rust_tsan = 1 ] && [ -f "$tsan_lib" ]; then
    log=$work/logs/tsan-rust-tests.log
    echo "running the Rust fault and stress tests under TSan (log: $log)"
    tests=()
    for f in "$root"/tests/fault_*.rs "$root"/tests/stress_*.rs; do tests+=(--test "$(basename "$f" .rs)"); done
    start=$SECONDS
    (cd "$root" && RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR="$tsan_target" TSAN_OPTIONS="halt_on_error=0" \
        timeout 1500 cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --release \
        "${tests[@]}" -- --nocapture) >"$log" 2>&1
    rc=$?
    reports=$(grep -c '^WARNING: ThreadSanitizer' "$log")
    cases=$(grep -c '^PASS ' "$log")
    if [ $rc = 0 ] && [ "$reports" = 0 ]; then
        result PASS tsan/rust-fault-and-stress-tests "$cases cases passed, no ThreadSanitizer report ($((SECONDS - start))s)"
    else
        result FAIL tsan/rust-fault-and-stress-tests "exit $rc, $reports ThreadSanitizer reports, $(grep -c '^FAIL ' "$log") failed cases (log: $log)"
    fi
fi

if ! "$root/scripts/reference/daemon.sh" stop "$rundir" >/dev/null 2>&1; then
    result FAIL daemon "the $daemon daemon died during the run"
fi
trap - EXIT
finish
