#!/usr/bin/env bash
# The benchmark (`make bench`): release builds, then every measurement on the local stack,
# a table on stdout and bench/results.json. See docs/benchmarks.md.
#
# Environment (all optional):
#   CARGO_TARGET_DIR   build directory (default target/bench, apart from the debug builds;
#                      the host binaries go to its host/ subdirectory)
#   BENCH_ARGS         extra arguments for `bench run`, e.g. "--carts 200000 --large-carts 1000000"
#   BENCH_OUT          results file (default bench/results.json)
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo-lambda and Zig from .tools/ (scripts/install-tools.sh), first on PATH.
source scripts/tools-env.sh

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/bench}
out=${BENCH_OUT:-bench/results.json}
started=$(date +%s)
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

# Two release builds, at the same time, in target directories of their own (cargo locks
# a directory while it builds):
# - arm64, as `sam build` makes the bootstraps (their sizes), at normal priority;
# - host x86_64, the binaries that are measured, at the lowest priority (nice 19): it takes
#   the CPU the arm64 build leaves idle (its three single-threaded LTO links at the end),
#   then the whole machine once the arm64 build is done. Profile `bench-host` is the
#   release profile without the cross-crate LTO pass (Cargo.toml). The emulator links the
#   system's SQLite when there is one: the bundled amalgamation is a minute of one core.
host_target_dir="$CARGO_TARGET_DIR/host"
host_log=$(mktemp)
host_build=
# On any exit, no build left running in the background.
stop_host_build() {
  if [[ -n $host_build ]]; then
    pkill -P "$host_build" 2>/dev/null || true
    kill "$host_build" 2>/dev/null || true
  fi
  rm -f "$host_log"
}
trap stop_host_build EXIT
if pkg-config --exists sqlite3 2>/dev/null; then
  sqlite="system SQLite $(pkg-config --modversion sqlite3)"
  use_system_sqlite=1
else
  sqlite="bundled SQLite"
  use_system_sqlite=0
fi
step "release builds, at once: host (profile bench-host, nice 19; emulator with $sqlite) and arm64"
(
  export CARGO_TARGET_DIR="$host_target_dir" LIBSQLITE3_SYS_USE_PKG_CONFIG=$use_system_sqlite
  nice -n 19 cargo build --profile bench-host --quiet \
    -p bench -p clean-expired-carts -p request-reviews -p record-review-reply -p derive-schedule -p send-messages \
    -p daily-report
  echo "host build done at $(( $(date +%s) - started ))s"
) >"$host_log" 2>&1 &
host_build=$!
cargo lambda build --release --arm64 --quiet -p clean-expired-carts -p request-reviews -p record-review-reply \
  -p derive-schedule -p send-messages -p daily-report
echo "arm64 build done at $(( $(date +%s) - started ))s"
if ! wait "$host_build"; then
  cat "$host_log"
  echo "the host build failed"
  exit 1
fi
cat "$host_log"
lambda_dir="$CARGO_TARGET_DIR/lambda"
for function in clean-expired-carts request-reviews record-review-reply derive-schedule send-messages daily-report; do
  file "$lambda_dir/$function/bootstrap" 2>/dev/null || ls -l "$lambda_dir/$function/bootstrap"
done
opt_level=$(sed -n '/^\[profile.release\]/,/^\[/s/^opt-level *= *//p' Cargo.toml | tr -d '"')
overrides=$(sed -n '/^\[profile.release.package\]/,/^\[/p' Cargo.toml | grep -c 'opt-level' || true)
if (( overrides > 0 )); then opt_level="$opt_level, $overrides per-package levels (Cargo.toml)"; fi
build_s=$(( $(date +%s) - started ))
echo "builds: ${build_s}s"

step "measurements"
release="$host_target_dir/bench-host"
# shellcheck disable=SC2086
"$release/bench" run \
  --function clean-expired-carts="$release/clean-expired-carts" \
  --function request-reviews="$release/request-reviews" \
  --function record-review-reply="$release/record-review-reply" \
  --function derive-schedule="$release/derive-schedule" \
  --function send-messages="$release/send-messages" \
  --function daily-report="$release/daily-report" \
  --bootstrap clean-expired-carts="$lambda_dir/clean-expired-carts/bootstrap" \
  --bootstrap request-reviews="$lambda_dir/request-reviews/bootstrap" \
  --bootstrap record-review-reply="$lambda_dir/record-review-reply/bootstrap" \
  --bootstrap derive-schedule="$lambda_dir/derive-schedule/bootstrap" \
  --bootstrap send-messages="$lambda_dir/send-messages/bootstrap" \
  --bootstrap daily-report="$lambda_dir/daily-report/bootstrap" \
  --bootstrap-target aarch64-unknown-linux-gnu \
  --opt-level "${opt_level:-3}" \
  --host-profile "bench-host: release without cross-crate LTO, codegen-units 1 (the emulator 16), x86_64" \
  --emulator "dynoxide-rs (embedded) with $sqlite" \
  --build-s "$build_s" \
  --out "$out" ${BENCH_ARGS:-}

step "done: $out (builds ${build_s}s, total $(( $(date +%s) - started ))s)"
