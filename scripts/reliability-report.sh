#!/usr/bin/env bash
# Reliability report: runs every reliability check of the project and prints a Markdown table
# (area, what was tried, how much, outcome), which is also written to docs/reliability.md with
# the date and the command. Every count in it comes from what the runs print.
#
#   scripts/reliability-report.sh
#
# Areas: client fault injection (tests/fault_*.rs), memory and thread checks of the library
# (scripts/memcheck.sh), thread-safety stress (tests/stress_*.rs), hostile guests
# (tests/hostile_*.rs), fuzzing (scripts/fuzz-smoke.sh, and the longer runs recorded in
# fuzz/README.md), daemon flow control (tests/server_flow.rs, tests/server_scale.rs) and the
# daemon under load (tests/load_daemon.rs). A check whose files are not on this branch is listed
# as "not available".
#
# Environment:
#   XS_REPORT_TIMEOUT  limit of each step in seconds (default 600; a safety net, not a budget)
#   XS_LOAD_SECS       length of the load run (default 25)
#   XS_MEMCHECK_ARGS   arguments for scripts/memcheck.sh (default: none; --no-tsan skips TSan)
#   FUZZ_SECS          seconds per fuzz target (default 20)
#   XS_REPORT_OUT      where to write the report (default docs/reliability.md)
# Logs of every step stay in target/reliability/. Exit status 0 only if every available check
# passed. About 5 minutes on a 2-core machine once everything is built; the first run also
# builds the fuzz targets and the ThreadSanitizer library (each several minutes).
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
root=$PWD
logs=$root/target/reliability
mkdir -p "$logs"
rm -f "$logs"/*
limit=${XS_REPORT_TIMEOUT:-600}
out=${XS_REPORT_OUT:-$root/docs/reliability.md}
started=$(date +%s)
load_at_start=$(cut -d' ' -f1 /proc/loadavg)

rows=()
bad=0
row() { rows+=("| $1 | $2 | $3 | $4 |"); }
fail() { bad=1; echo "FAIL: $*" >&2; }
say() { echo "== $*" >&2; }
# Markdown cells: no pipes, no newlines.
cell() { tr '\n' ' ' | sed 's/|/\\|/g; s/  */ /g; s/ $//'; }
# 1234567 -> 1,234,567
num() { echo "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }

# plural 3 test -> "3 tests"
plural() { if [ "$1" = 1 ]; then echo "1 $2"; else echo "$(num "$1") ${3:-$2s}"; fi; }

# The first sentence of a source file's leading `//!` doc paragraph.
doc_sentence() {
    sed -n '/^\/\/!/!q; s/^\/\/! \{0,1\}//p' "$1" | awk 'NF == 0 { exit } { printf "%s ", $0 }' |
        sed 's/\([.!?]\) .*/\1/' | cell
}

# Sums cargo's `test result:` lines of a log: passed failed ignored binaries.
cargo_counts() {
    awk '/^test result:/ {
            n++
            for (i = 2; i <= NF; i++) {
                if ($i ~ /^passed;?$/) p += $(i - 1)
                if ($i ~ /^failed;?$/) f += $(i - 1)
                if ($i ~ /^ignored;?$/) ig += $(i - 1)
            }
        }
        END { printf "%d %d %d %d\n", p, f, ig, n }' "$1"
}

# Lines the tests print per case (`PASS x: ...`, `FAIL ...`, `SKIP ...`).
case_count() { grep -cE "^$1 " "$2"; }

# Runs `timeout $limit "$@"` with output to a log; sets $rc.
run_logged() {
    local log=$1
    shift
    timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null
    rc=$?
}

timeout_note() { [ "$rc" = 124 ] && echo "timed out after ${limit} s; "; }

# ---- build every test binary once, so that the steps below time only their runs ----
test_files=(tests/fault_*.rs tests/stress_*.rs tests/hostile_*.rs tests/server_flow.rs
            tests/server_scale.rs tests/load_daemon.rs)
test_args=()
for f in "${test_files[@]}"; do test_args+=(--test "$(basename "$f" .rs)"); done
say "building (cargo test --release --no-run; log: $logs/build.log)"
if ! cargo test --release --no-run "${test_args[@]}" >"$logs/build.log" 2>&1; then
    fail "the build failed (log: $logs/build.log)"
    tail -20 "$logs/build.log"
    exit 1
fi

# The reference Xen packages let some fault cases run against the C daemon and library too;
# without them (no network, not Debian) those cases report SKIP.
if [ -x scripts/reference/fetch.sh ]; then
    say "reference Xen packages (scripts/reference/fetch.sh; log: $logs/reference.log)"
    scripts/reference/fetch.sh >"$logs/reference.log" 2>&1 || say "not fetched: cases needing them will skip"
fi
# The fuzz targets build apart from their runs, so the runs' time is only fuzzing.
fuzz_built=1
if [ -x scripts/fuzz-smoke.sh ]; then
    say "building the fuzz targets (log: $logs/fuzz-build.log)"
    FUZZ_BUILD_ONLY=1 run_logged "$logs/fuzz-build.log" scripts/fuzz-smoke.sh
    [ "$rc" = 0 ] || fuzz_built=0
fi

# ---- integration-test areas ----
# test_area AREA SLUG FILE...: runs the given tests/*.rs, one row.
test_area() {
    local area=$1 slug=$2
    shift 2
    local files=("$@")
    if [ ${#files[@]} = 0 ]; then
        row "$area" "—" "—" "not available on this branch"
        return
    fi
    say "$area (${files[*]})"
    local args=() what=() f
    for f in "${files[@]}"; do
        args+=(--test "$(basename "$f" .rs)")
        what+=("\`$(basename "$f" .rs)\`: $(doc_sentence "$f")")
    done
    local log=$logs/$slug.log
    run_logged "$log" cargo test --release --no-fail-fast "${args[@]}" -- --nocapture
    local p f ig n
    read -r p f ig n < <(cargo_counts "$log")
    local cp cf cs
    cp=$(case_count PASS "$log") cf=$(case_count FAIL "$log") cs=$(case_count SKIP "$log")
    local much
    much="$(plural "$p" test) in $(plural ${#files[@]} file)"
    [ "$ig" = 0 ] || much+=", $ig ignored"
    [ $((cp + cf + cs)) = 0 ] || much+="; $(plural "$cp" case) passed, $cf failed, $cs skipped"
    # A test that reports one case in detail: quote it.
    if [ "$cp" -le 2 ] && [ "$cp" -gt 0 ] && [ "$cf" = 0 ]; then
        much+=": $(grep -E '^PASS ' "$log" | sed 's/^PASS //' | cut -c1-300 | paste -sd';' -)"
    fi
    local outcome
    if [ "$rc" = 0 ] && [ "$f" = 0 ] && [ "$cf" = 0 ] && [ "$n" -gt 0 ]; then
        outcome="pass"
        [ "$cs" = 0 ] || outcome+=" ($(plural "$cs" case) skipped, e.g. $(grep -m1 -E '^SKIP ' "$log" | sed 's/^SKIP //' | cut -c1-160 | cell))"
    else
        outcome="**FAIL**: $(timeout_note)$f tests failed$( [ "$cf" = 0 ] || echo ", first: $(grep -m1 -E '^FAIL ' "$log" | cut -c1-160)") (log: target/reliability/$slug.log)"
        fail "$area"
    fi
    row "$area" "$(printf '%s<br>' "${what[@]}" | sed 's/<br>$//' | cell)" "$much" "$(echo "$outcome" | cell)"
}

test_area "Client fault injection" faults tests/fault_*.rs
test_area "Thread-safety stress" stress tests/stress_*.rs
test_area "Hostile guests" hostile tests/hostile_*.rs
test_area "Daemon flow control and scale" flow tests/server_flow.rs tests/server_scale.rs

# ---- memory and thread checks of the library (one script, two rows) ----
if [ -x scripts/memcheck.sh ]; then
    say "memcheck and ThreadSanitizer (scripts/memcheck.sh ${XS_MEMCHECK_ARGS:-})"
    log=$logs/memcheck.log
    # shellcheck disable=SC2086 # word splitting of the arguments is wanted
    run_logged "$log" scripts/memcheck.sh ${XS_MEMCHECK_ARGS:-}
    programs() { grep -E "^$1 $2/" "$log" | sed "s/^$1 $2\/\([^:]*\).*/\1/" | paste -sd, - | sed 's/,/, /g'; }
    mp=$(grep -cE '^PASS memcheck/' "$log") mf=$(grep -cE '^FAIL memcheck/' "$log")
    tp=$(grep -cE '^PASS tsan/' "$log") tf=$(grep -cE '^FAIL tsan/' "$log") ts=$(grep -cE '^SKIP tsan/' "$log")
    setup_fail=$(grep -E '^FAIL ' "$log" | grep -vE '^FAIL (memcheck|tsan)/' | head -1 | cut -c1-200)
    # memcheck is done once the script moved on to ThreadSanitizer (or finished).
    if grep -qE '^=== ThreadSanitizer|^[0-9]+ passed, [0-9]+ failed' "$log"; then mdone=1; else mdone=0; fi
    if [ "$mdone" = 1 ] && [ "$mf" = 0 ] && [ "$mp" -gt 0 ] && [ -z "$setup_fail" ]; then
        outcome="pass: no invalid access, no uninitialised read, no bad free, no definite or indirect leak"
    else
        outcome="**FAIL**: $( [ "$mdone" = 1 ] || timeout_note)$(grep -E '^FAIL ' "$log" | grep -vE '^FAIL tsan/' | head -2 | cut -c1-200 | cell) (log: target/reliability/memcheck.log)"
        fail "memcheck"
    fi
    row "Memory safety of the library (valgrind)" \
        "every C test program (c-tests/) linked with our libxenstore, run under valgrind memcheck against our daemon" \
        "$(plural "$mp" program) passed, $mf failed: $(programs PASS memcheck)" "$(echo "$outcome" | cell)"
    if [ "$ts" -gt 0 ] && [ $((tp + tf)) = 0 ]; then
        outcome="not run: $(grep -m1 '^SKIP tsan/' "$log" | sed 's/^SKIP tsan\/[^:]*: //')"
    elif [ "$tf" = 0 ] && [ "$tp" -gt 0 ] && grep -qE '^[0-9]+ passed, [0-9]+ failed' "$log"; then
        outcome="pass: no ThreadSanitizer report"
    else
        outcome="**FAIL**: $(timeout_note)$(grep -E '^FAIL tsan/' "$log" | head -2 | cut -c1-200 | cell) (log: target/reliability/memcheck.log)"
        fail "tsan"
    fi
    row "Thread safety of the library (ThreadSanitizer)" \
        "our libxenstore and the Rust standard library built with -Zsanitizer=thread, the threaded C test programs with -fsanitize=thread, against our daemon" \
        "$(plural "$tp" program) passed, $tf failed$( [ "$tp" = 0 ] || echo ": $(programs PASS tsan)")" "$(echo "$outcome" | cell)"
else
    row "Memory and thread safety of the library" "scripts/memcheck.sh" "—" "not available on this branch"
fi

# ---- fuzzing ----
if [ -x scripts/fuzz-smoke.sh ]; then
    say "fuzz smoke (scripts/fuzz-smoke.sh, ${FUZZ_SECS:-20} s per target)"
    log=$logs/fuzz.log
    if [ "$fuzz_built" = 1 ]; then
        FUZZ_SECS=${FUZZ_SECS:-20} run_logged "$log" scripts/fuzz-smoke.sh
    else
        cp "$logs/fuzz-build.log" "$log"
    fi
    # "== <target>: <n> s over ..." then "   ok: <runs> runs, no finding" or "   FINDING in <target>:"
    per_target=$(awk '
        /^== [A-Za-z0-9_]+: [0-9]+ s over/ { t = $2; sub(/:$/, "", t); s = $3 }
        function commas(n,   o) { o = ""; while (length(n) > 3) { o = "," substr(n, length(n) - 2) o; n = substr(n, 1, length(n) - 3) } return n o }
        /^   ok: / && t != "" { printf "%s: %s runs in %s s; ", t, commas($2), s; t = "" }
        /^   FINDING in / && t != "" { printf "%s: FINDING; ", t; t = "" }' "$log" | sed 's/; $//')
    findings=$(grep -c '^   FINDING in ' "$log")
    targets=$(grep -cE '^== [A-Za-z0-9_]+: [0-9]+ s over' "$log")
    what="libFuzzer, coverage-guided, from the checked-in corpus: $(grep -oE '^== [A-Za-z0-9_]+:' "$log" | sed 's/^== //; s/:$//' | paste -sd, - | sed 's/,/, /g')"
    much="${per_target:-no target ran}"
    if [ "$rc" = 0 ] && [ "$findings" = 0 ] && [ "$targets" -gt 0 ]; then
        outcome="pass: no finding in $targets targets"
    else
        outcome="**FAIL**: $(timeout_note)$findings findings (inputs in fuzz/artifacts/; log: target/reliability/fuzz.log)"
        [ "$fuzz_built" = 1 ] || outcome+="; the targets did not build"
        fail "fuzzing"
    fi
    row "Fuzzing (smoke run)" "$(echo "$what" | cell)" "$(echo "$much" | cell)" "$(echo "$outcome" | cell)"
else
    row "Fuzzing (smoke run)" "scripts/fuzz-smoke.sh" "—" "not available on this branch"
fi
# The longer runs are recorded by hand in fuzz/README.md ("## Runs": target, build, time,
# executions, result); they are quoted, not rerun.
if [ -f fuzz/README.md ] && grep -q '^## Runs' fuzz/README.md; then
    recorded=$(awk '/^## Runs/ { on = 1; next } /^## / { on = 0 } on && /^\| *`/' fuzz/README.md |
        awk -F'|' '{ for (i = 2; i <= 6; i++) gsub(/^ +| +$/, "", $i)
                     printf "%s (%s): %s, %s executions, %s; ", $2, $3, $4, ($5 == "" ? "?" : $5), $6 }' |
        sed 's/; $//')
    row "Fuzzing (longer runs, recorded)" "as above, run for minutes (fuzz/README.md, \"Runs\"); quoted, not rerun" \
        "$(echo "${recorded:-none recorded}" | cell)" "as recorded"
else
    row "Fuzzing (longer runs, recorded)" "fuzz/README.md" "—" "not available on this branch"
fi

# ---- the daemon under load ----
if [ -f tests/load_daemon.rs ]; then
    secs=${XS_LOAD_SECS:-25}
    say "daemon under load ($secs s)"
    log=$logs/load.log
    summary=$logs/load.summary
    XS_LOAD_SECS=$secs XS_LOAD_SUMMARY=$summary \
        run_logged "$log" cargo test --release --test load_daemon -- --ignored --nocapture load_long
    v() { sed -n "s/^load: $1=//p" "$summary" 2>/dev/null | head -1; }
    mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
    if [ ! -s "$summary" ]; then
        row "Daemon under load" "tests/load_daemon.rs" "—" "**FAIL**: $(timeout_note)no summary (log: target/reliability/load.log)"
        fail "load"
    else
        load_outcome() { # the run's failures in area $1 (Throughput, Memory, ...), else "pass"
            local f
            f=$(sed -n "s/^load: failure=$1: //p" "$summary" | head -2 | cut -c1-200)
            if [ -n "$f" ]; then echo "**FAIL**: $f"; else echo "pass"; fi
        }
        row "Daemon under load: throughput" \
            "$(v clients) clients on our xenstored for $(v seconds) s: $(v busy) busy (8 pipelined READ/WRITE/DIRECTORY/GET_PERMS per round, every 4th round a transaction of 5 pipelined requests, some aborted), $(v idle) idle, $(v sleepers) watching the busy subtree and never reading, $(v droppers) threads connecting and vanishing mid-transaction, mid-message, mid-header or with replies unread" \
            "$(num "$(v ops_total)") requests completed ($(num "$(v ops_per_s)")/s); $(num "$(v dropped_mid_transaction)") + $(num "$(v dropped_mid_message)") + $(num "$(v dropped_mid_header)") + $(num "$(v dropped_unread_replies)") abrupt disconnects" \
            "$(load_outcome Throughput); per second: min $(num "$(v ops_per_s_min)"), median $(num "$(v ops_per_s_median)"), max $(num "$(v ops_per_s_max)") (first second excluded); per daemon CPU-second: min $(num "$(v ops_per_cpu_s_min)"), median $(num "$(v ops_per_cpu_s_median)")"
        row "Daemon under load: memory" \
            "daemon VmRSS sampled every second during the run" \
            "$(v samples) samples" \
            "$(load_outcome Memory): $(mib "$(v rss_min_kib)")–$(mib "$(v rss_max_kib)") (after connecting everyone: $(mib "$(v rss_setup_kib)"); growth over the second half: $(v rss_growth_second_half_kib) KiB)"
        row "Daemon under load: no acknowledged write lost" \
            "every busy client's last acknowledged direct write and committed transaction (per key, plus a commit counter written only in transactions), read back from a fresh connection; no write of an abandoned transaction visible; CONTROL check" \
            "$(num "$(v writes_acked)") writes and $(num "$(v commits_acked)") commits acknowledged, $(num "$(v aborts)") aborted on purpose, $(v conflicts) conflicts; $(num "$(v values_verified)") final values read back" \
            "$(load_outcome Durability): $(v values_lost) lost; store check $(v store_check)"
        row "Daemon under load: responsiveness" \
            "a probe READ every 100 ms on its own connection, and a fresh connection once a second; afterwards every idle client asked at once, and a never-reading watcher starts reading" \
            "$(v probes) probes" \
            "$(load_outcome Responsiveness): $(v probe_failures) failed; latency median $(v probe_p50_ms) ms, p99 $(v probe_p99_ms) ms, max $(v probe_max_ms) ms; fresh connection max $(v fresh_connect_max_ms) ms; idle clients answered $(v idle_answered); the watcher got its reply after $(num "$(v sleeper_events_kept)") kept events"
        if [ "$rc" != 0 ] || [ "$(v failures)" != 0 ]; then fail "load"; fi
    fi
else
    row "Daemon under load" "tests/load_daemon.rs" "—" "not available on this branch"
fi

# ---- the report ----
took=$(( $(date +%s) - started ))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit+=" (with local changes)"
branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
report=$(
    echo "# Reliability report"
    echo
    echo "Generated by \`scripts/reliability-report.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), branch \`$branch\`," \
        "commit $commit, on $(nproc) CPUs (load average $load_at_start at the start); the run took $took s."
    echo "Rerun it with the same command; \"not available\" marks checks whose files are not on the branch."
    echo "Logs of each step: \`target/reliability/\`."
    echo
    echo "| Area | What was tried | How much | Outcome |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Counts come from the runs' own output: cargo's \`test result\` lines, the \`PASS\`/\`FAIL\`/\`SKIP\`"
    echo "lines some tests and scripts print per case, libFuzzer's final statistics, and the \`load:\` summary"
    echo "of tests/load_daemon.rs. Throughput per daemon CPU-second is the load run's narrow band: it does"
    echo "not depend on what else the machine runs, while requests per wall-clock second do."
)
mkdir -p "$(dirname "$out")"
echo "$report" >"$out"
echo "$report"
exit $bad
