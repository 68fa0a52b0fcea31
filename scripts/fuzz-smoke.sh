#!/usr/bin/env bash
# Fuzz smoke run: builds the libFuzzer targets of fuzz/ with the stable toolchain and runs each
# for a short fixed time over its checked-in corpus. Exits non-zero on any finding (crash,
# panic, failed invariant, timeout), leaving the input in fuzz/artifacts/.
#
#   scripts/fuzz-smoke.sh                 # every target, 20 s each
#   FUZZ_SECS=600 scripts/fuzz-smoke.sh dispatch      # one target, longer
#   FUZZ_SANITIZER=address scripts/fuzz-smoke.sh      # with AddressSanitizer (see below)
#   FUZZ_BUILD_ONLY=1 scripts/fuzz-smoke.sh
#
# No nightly toolchain or cargo-fuzz is needed: coverage comes from LLVM's sanitizer-coverage
# pass, which stable rustc runs through -Cpasses/-Cllvm-args, and libfuzzer-sys links libFuzzer
# (built from source with the system C++ compiler). FUZZ_SANITIZER=address adds ASan through
# -Zsanitizer, which stable rustc only accepts with RUSTC_BOOTSTRAP=1 (the runtime ships with
# the stable toolchain); Rust code is memory-safe without it, it matters for the ring's
# unsafe page accesses. New inputs found go to a temporary directory, not to the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${FUZZ_SECS:-20}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_decode dispatch ring_reader)
sanitizer=${FUZZ_SANITIZER:-none}

if ! command -v c++ >/dev/null 2>&1; then
    echo "== installing a C++ compiler (libFuzzer is built from source)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
)
target_dir=$root/fuzz/target
case $sanitizer in
    none) ;;
    address)
        export RUSTC_BOOTSTRAP=1
        flags+=(-Zsanitizer=address)
        target_dir=$root/fuzz/target-asan
        ;;
    *) echo "FUZZ_SANITIZER must be none or address" >&2; exit 2 ;;
esac
# --target keeps the flags off build scripts and proc macros (they must not be instrumented).
export RUSTFLAGS="${flags[*]}"
export CARGO_TARGET_DIR=$target_dir

start=$(date +%s)
echo "== building fuzz targets (${targets[*]}; sanitizer: $sanitizer)"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" "${bins[@]}"
echo "== built in $(( $(date +%s) - start )) s"
[ -z "${FUZZ_BUILD_ONLY:-}" ] || exit 0

mkdir -p fuzz/artifacts
status=0
for t in "${targets[@]}"; do
    work=$(mktemp -d)
    echo "== $t: ${secs} s over fuzz/corpus/$t"
    log=$work/log
    mkdir -p "$work/new"
    if "$target_dir/$triple/release/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t-" \
        "$work/new" "fuzz/corpus/$t" >"$log" 2>&1 </dev/null; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "   ok: ${runs:-?} runs, no finding"
    else
        status=1
        echo "   FINDING in $t:"
        grep -E "panicked|ERROR|SUMMARY|Test unit written|assertion" "$log" | head -20 | sed 's/^/   /'
        echo "   (full log kept at $log)"
        continue
    fi
    rm -rf "$work"
done
echo "== fuzz smoke done in $(( $(date +%s) - start )) s"
exit $status
