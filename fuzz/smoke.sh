#!/usr/bin/env bash
# CI smoke run of the cargo-fuzz targets: installs cargo-fuzz when missing, then runs every
# target on the stable toolchain without a sanitizer (`-s none`; `c_abi_sequence`'s long runs use
# AddressSanitizer on nightly, see README.md) for SMOKE_SECONDS (default 20) on its committed
# corpus. A crash fails the script (cargo fuzz exits non-zero and leaves the input under
# fuzz/artifacts/<target>/). Run from anywhere: `fuzz/smoke.sh`.
set -euo pipefail
cd "$(dirname "$0")"
secs="${SMOKE_SECONDS:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
# one build of every target first (the runs below then start at once)
cargo fuzz build -s none
for target in state_load config_json matrix_parsers diagnostics_scale c_abi_sequence; do
    mkdir -p "corpus/$target"
    # a scratch copy of the corpus: the smoke run must not grow the committed one
    work="$(mktemp -d)"
    cp -r "corpus/$target/." "$work/"
    echo "== $target (${secs} s)"
    cargo fuzz run -s none "$target" "$work" -- -max_total_time="$secs" -rss_limit_mb=2048
    rm -rf "$work"
done
echo "fuzz smoke: all targets ran ${secs} s without a crash"
