#!/bin/bash
# `make fuzz`: runs the fuzz targets of fuzz/ under libFuzzer (cargo-fuzz,
# nightly Rust), FUZZ_SECONDS each (default 60), the targets of
# FUZZ_TARGETS (default: all). Installs nightly Rust and cargo-fuzz when
# missing. Each target starts from fuzz/corpus/<target>/ (the seeds and
# the regression inputs, committed); what libFuzzer finds goes to
# fuzz/work/<target>/ (not committed). A failure stops the run with its
# input in fuzz/artifacts/<target>/: fix it, add a regression test, and
# copy the input into fuzz/corpus/<target>/ so that `make test` (stable
# Rust, init/tests/fuzz_corpus.rs) replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_EACH=${FUZZ_SECONDS:-60}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain (libFuzzer needs it)" >&2
    if ! rustup toolchain install nightly --profile minimal >&2; then
        echo "fuzz: nightly Rust could not be installed: 'make fuzz' needs it" \
             "(cargo-fuzz builds with -Zsanitizer). 'make test' still replays" \
             "every corpus and runs short seeded mutations on stable." >&2
        exit 1
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi

targets=${FUZZ_TARGETS:-$(ls fuzz_targets | sed 's/\.rs$//')}
# Built once with debug assertions (integer overflow panics, as in the
# stable replay), then each target runs on its own.
cargo +nightly fuzz build -O --debug-assertions >&2
failed=()
for t in $targets; do
    mkdir -p "work/$t"
    echo "fuzz: $t for ${SECONDS_EACH}s" >&2
    cargo +nightly fuzz run -O --debug-assertions "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len=16384 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (the inputs are in fuzz/artifacts/<target>/;" \
         "replay one with: cargo +nightly fuzz run <target> <file>)" >&2
    exit 1
fi
echo "fuzz: no failures in: $targets" >&2
