#!/usr/bin/env bash
# Instructions per deleted cart of one sweep, counted by callgrind. Unlike CPU time, the
# count repeats on a shared machine, so it compares release profiles (docs/benchmarks.md,
# "Release profile"). Needs valgrind.
#
#   scripts/bench-instructions.sh [BENCH_BINARY]   (default target/bench/release/bench,
#                                                   built here with the release profile)
#
# Starts the local stack (`devstack serve`, debug build) with CARTS expired carts (default
# 4000), runs `bench sweep-only` under callgrind twice: once to delete them all, once on the
# swept table (start-up and the empty scan), and prints the difference per deleted cart.
set -euo pipefail
cd "$(dirname "$0")/.."

carts=${CARTS:-4000}
port=${PORT:-8123}
if [[ $# -eq 0 ]]; then
  # The deployed profile, fat LTO included (make bench measures a build without LTO).
  bench=target/bench/release/bench
  CARGO_TARGET_DIR=target/bench cargo build --release --quiet -p bench
else
  bench=$1
fi
test -x "$bench" || { echo "no $bench: give the path of a release bench binary"; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }

cargo build --quiet -p devstack
devstack="${CARGO_TARGET_DIR:-target}/debug/devstack"
log=$(mktemp)
"$devstack" serve --port "$port" --prefix cg --seed-carts "$carts" >"$log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 120); do grep -q '^ready' "$log" && break; sleep 1; done
grep -q '^ready' "$log" || { cat "$log"; exit 1; }

# Prints "<instructions> <deleted>" for one sweep of the local carts table.
sweep() {
  local output
  output=$(AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" AWS_REGION=eu-west-3 \
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true \
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bench" sweep-only --table cg-carts 2>&1)
  local instructions deleted
  instructions=$(grep -o 'Collected : [0-9]*' <<<"$output" | grep -o '[0-9]*$')
  deleted=$(grep -o '"deleted":[0-9]*' <<<"$output" | head -1 | grep -o '[0-9]*$')
  echo "$instructions $deleted"
}

read -r full deleted < <(sweep)
read -r empty _ < <(sweep)
(( deleted > 0 )) || { echo "the sweep deleted nothing"; exit 1; }
echo "binary:       $bench"
echo "deleted:      $deleted carts"
echo "instructions: $full (sweep), $empty (start-up and empty scan)"
echo "per deleted:  $(( (full - empty) / deleted ))"
