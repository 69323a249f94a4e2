#!/usr/bin/env bash
# The whole test suite, as CI runs it: format and lint, unit and integration tests on
# the embedded dynoxide emulator, the DynamoDB integration tests again on the moto
# server, the end-to-end run through `cargo lambda`, the template checks, and `sam build`
# then `sam local invoke` of every function in a Lambda container.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pinned tools (moto_server, cargo lambda, sam, cfn-lint, prism) in .tools/, first on PATH.
source scripts/tools-env.sh

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "one TLS stack: rustls with ring in every function, no aws-lc-rs, no OpenSSL (docs/benchmarks.md)"
for crate in aws-lc-rs aws-lc-sys openssl-sys native-tls; do
  if cargo tree --quiet -p clean-expired-carts -p derive-schedule -p request-reviews -p record-review-reply -p send-messages -p erase-customer -p daily-report -e normal -i "$crate" >/dev/null 2>&1; then
    cargo tree -p clean-expired-carts -p derive-schedule -p request-reviews -p record-review-reply -p send-messages -p erase-customer -p daily-report -e normal -i "$crate"
    echo "FAIL: $crate is linked into a function; see crates/backoffice/src/https.rs"
    exit 1
  fi
done
cargo tree --quiet -p clean-expired-carts -e normal -i ring >/dev/null

step "unit and integration tests (DynamoDB: embedded dynoxide; Twilio: Prism and wiremock)"
cargo test --workspace

step "DynamoDB integration tests on the moto server"
moto_port=${MOTO_PORT:-5055}
moto_log=$(mktemp)
moto_server -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && break; sleep 0.1; done
AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$moto_port" DYNAMODB_EMULATOR=moto \
  cargo test -p backoffice --test dynamodb
kill $moto_pid 2>/dev/null || true

step "docs: README's Quick start is the real output of make demo; docs/benchmarks.md's table is bench/results.json"
bash scripts/check-docs.sh

step "end to end through cargo lambda watch / invoke"
bash scripts/e2e.sh

step "template: IAM policies name exactly the calls the code makes"
cargo test -p devstack --test iam_policies

step "template: sam validate --lint, cfn-lint, cfn-lint-serverless"
bash infra/lint.sh

step "template: sam build (cargo lambda build --release --arm64, every function)"
# The deployable artifacts, as `sam build && sam deploy` makes them: a release build
# with fat LTO, cross-compiled with Zig. Built in a scratch directory so that a CI run
# leaves no .aws-sam behind.
if rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  sam_build_dir=$(mktemp -d)
  SAM_CLI_TELEMETRY=0 sam build --template template.yaml --build-dir "$sam_build_dir"
  # The deployed size is a regression check (docs/benchmarks.md): each stripped bootstrap must
  # stay within the 6 MiB target of the release profile.
  max_bootstrap_bytes=$((6 * 1024 * 1024))
  for fn in CleanExpiredCartsFunction DeriveScheduleFunction RequestReviewsFunction RecordReviewReplyFunction SendMessagesFunction EraseCustomerFunction DailyReportFunction; do
    test -x "$sam_build_dir/$fn/bootstrap" || { echo "sam build made no $fn/bootstrap"; exit 1; }
    bytes=$(stat -c %s "$sam_build_dir/$fn/bootstrap")
    echo "$fn/bootstrap: $bytes bytes (limit $max_bootstrap_bytes)"
    if (( bytes > max_bootstrap_bytes )); then
      echo "FAIL: $fn/bootstrap is over 6 MiB; see docs/benchmarks.md (release profile) before raising the limit"
      exit 1
    fi
  done

  step "sam local invoke: each function in a Lambda container, template environment, local stand-ins"
  SAM_BUILD_DIR=$sam_build_dir bash scripts/sam-local.sh
  rm -rf "$sam_build_dir"
else
  echo "SKIPPED: sam build and sam local invoke: the aarch64-unknown-linux-gnu Rust target is not installed (rustup could not fetch it)"
fi
