#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian 12 machine: installs what the tests need,
# builds, then runs each stage below; a failing stage does not stop the others. Ends with one
# line per stage and `test-all: N passed, N failed`; exit status is non-zero when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need_pkgs=()
for p in cmake pkg-config gcc make; do command -v "$p" >/dev/null 2>&1 || need_pkgs+=("$p"); done
command -v objdump >/dev/null 2>&1 || need_pkgs+=(binutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "== installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || exit 1
fi

# The gates below need clippy and rustfmt, which a minimal toolchain lacks.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
    echo "== installing: clippy rustfmt"
    rustup component add clippy rustfmt || exit 1
fi

echo "== fetching the reference Xen 4.17 packages"
scripts/reference/fetch.sh "$root/.reference" || exit 1

echo "== building"
cargo build --release --all-targets || exit 1

# The differential tests must not skip quietly here: the reference daemons were just fetched.
export XS_REQUIRE_REFERENCE=1

results=()
stages=0
failed=0
# Each stage's output is also kept, so that the summary can show why a stage failed: a run
# whose output is read from its end sees the reason next to the stage's line.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
stage() {
    local name=$1 start=$SECONDS rc log
    shift
    stages=$((stages + 1))
    log=$logs/$stages
    echo
    echo "== $name"
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if [ $rc -eq 0 ]; then
        results+=("PASS  $name ($((SECONDS - start)) s)")
    else
        results+=("FAIL  $name (exit $rc, $((SECONDS - start)) s)")
        # Its last lines, where every stage says what went wrong.
        local why line
        why=$(grep -av '^[[:space:]]*$' "$log" | tail -n 8)
        while IFS= read -r line; do results+=("      | ${line:0:200}"); done <<<"$why"
        failed=$((failed + 1))
    fi
}

# The lints the library asks for (unsafe_op_in_unsafe_fn, undocumented_unsafe_blocks) are
# set in src/lib.rs, so they hold here too.
stage "formatting (cargo fmt --check)" cargo fmt --check
stage "lints (cargo clippy --all-targets -D warnings)" cargo clippy --all-targets -- -D warnings
stage "Rust tests (unit and integration)" cargo test --release --no-fail-fast
stage "C headers against Debian's" tests/headers/compat.py "$root/.reference/root"
stage "C tests, both libraries, Debian's C xenstored" c-tests/run.sh --daemon cxenstored
stage "C tests, both libraries, our xenstored" c-tests/run.sh --daemon ours
stage "C tests, our library embedded vs with our daemon" c-tests/run.sh --daemon embedded
stage "demo (toolstack and guest on the embedded store)" scripts/demo.sh
stage "domain-creation replay: recording -> bench trace, replayed on ours" scripts/replay-check.sh
stage "conformance: Debian's tools and test-xenstore, every library x daemon" \
    tests/reference/conformance.sh
stage "real Xen: Xen 4.17 under QEMU, the C xenstored then ours in dom0, two xl guests, both libraries" \
    scripts/xen-vm/run.sh
# ThreadSanitizer needs a nightly toolchain, which a fresh machine lacks: run it by hand with
# scripts/memcheck.sh (see docs/testing.md, Reliability).
stage "C tests under valgrind memcheck" scripts/memcheck.sh --no-tsan
stage "fuzz targets' own checks" cargo test --release --manifest-path fuzz/Cargo.toml
stage "fuzzing smoke run" env FUZZ_SECS="${FUZZ_SECS:-15}" scripts/fuzz-smoke.sh
# Installs and removes system packages, and puts them back as they were: last, so that no
# other stage ever runs with a libxenstore.so.4 in the system's library path.
stage "Debian packages: built, lintian, installed in place of Debian's libxenstore4 and back" \
    tests/packaging/debian.sh

echo
echo "== summary"
printf '%s\n' "${results[@]}"
echo "test-all: $((stages - failed)) passed, $failed failed"
[ $failed -eq 0 ]
