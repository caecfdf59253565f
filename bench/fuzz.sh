#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (or the ones named) for SECONDS each, one at a
# time, and prints per target: executions, exec/s, corpus size and crashes (files in
# fuzz/artifacts/<target>/). Exits 1 if any target has a crash, new or old.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]     # SECONDS defaults to 600
#   make fuzz FUZZ_SECONDS=60
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The targets are
# built without a sanitizer (`-s none`): the crate forbids `unsafe`, so AddressSanitizer
# would mostly halve the executions; debug assertions and overflow checks stay on.
# Seed corpora come from bench/fuzz_corpus.py (generated, not committed).
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
shift || true
FUZZ=(cargo +nightly fuzz)
FLAGS=(-s none --debug-assertions)

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <("${FUZZ[@]}" list)
fi

if [ ! -d fuzz/corpus ]; then
    PY=python3
    [ -x .venv/bin/python ] && PY=.venv/bin/python
    "$PY" bench/fuzz_corpus.py
fi

# Build once, then run the binaries themselves: `cargo fuzz run` would rebuild before
# each target whenever a source changed meanwhile, and the targets would test different code.
"${FUZZ[@]}" build "${FLAGS[@]}"
TRIPLE=$(rustc +nightly -vV | sed -n 's/^host: //p')
BIN=fuzz/target/$TRIPLE/release

mkdir -p fuzz/logs
printf '%-16s %12s %8s %8s %8s\n' target executions exec/s corpus crashes
status=0
for target in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="fuzz/logs/$target.log"
    # libFuzzer stops at the first crash; the exit status is read from the artifacts.
    "$BIN/$target" "fuzz/corpus/$target" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 -close_fd_mask=1 >"$log" 2>&1 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    crashes=$(find "fuzz/artifacts/$target" -type f | wc -l)
    printf '%-16s %12s %8s %8s %8s\n' "$target" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
    if [ "$crashes" -gt 0 ]; then
        status=1
        find "fuzz/artifacts/$target" -type f | sed 's/^/    /'
    fi
done
exit "$status"
