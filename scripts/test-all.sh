#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian 12 machine: installs what the tests need,
# builds, then runs the Rust tests, the C tests (CTest; against Debian's library, and in
# embedded mode), the demo and the conformance runs against the real Xen 4.17 tools and
# daemons. Exit status is non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need_pkgs=()
for p in cmake pkg-config gcc make; do command -v "$p" >/dev/null 2>&1 || need_pkgs+=("$p"); done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "== installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

echo "== fetching the reference Xen 4.17 packages"
scripts/reference/fetch.sh "$root/.reference"

echo "== building"
cargo build --release --all-targets

# The differential tests must not skip quietly here: the reference daemons were just fetched.
export XS_REQUIRE_REFERENCE=1

echo "== Rust tests"
cargo test --release --no-fail-fast 2>&1 | tee /tmp/xs-cargo-test.log
grep -q 'test result: FAILED' /tmp/xs-cargo-test.log && exit 1

echo "== C headers against Debian's"
tests/headers/compat.py "$root/.reference/root"

echo "== C tests, against Debian's C xenstored and against ours"
c-tests/run.sh --daemon cxenstored
c-tests/run.sh --daemon ours

echo "== C tests: our library embedded (XENSTORE_EMBEDDED=1) against our library with our daemon"
c-tests/run.sh --daemon embedded

echo "== the demo (toolstack and guest on the embedded store)"
scripts/demo.sh

echo "== conformance against Xen 4.17"
tests/reference/conformance.sh

echo "== C tests under valgrind memcheck"
# ThreadSanitizer needs a nightly toolchain, which a fresh machine lacks: run it by hand with
# scripts/memcheck.sh (see the README's reliability section).
scripts/memcheck.sh --no-tsan

echo "== fuzzing smoke run (each target over its corpus, then briefly beyond)"
cargo test --release --manifest-path fuzz/Cargo.toml
FUZZ_SECS=${FUZZ_SECS:-15} scripts/fuzz-smoke.sh
