#!/usr/bin/env bash
# Cheap regression check of the benchmark's machine-independent counts (no release build):
# a debug-build sweep of 20,000 carts (10 % expired) on embedded dynoxide must read and
# request about once per deleted cart, and the committed bench/results.json must meet the
# count and binary-size targets. Timings are not checked: they depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet -p bench --test counts
