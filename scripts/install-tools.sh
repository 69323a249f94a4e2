#!/usr/bin/env bash
# Installs what the tests and the local stack need, by package name, from PyPI and npm,
# plus rustup components. Safe to run again: it skips what is already there.
set -euo pipefail

need_pip=()
command -v moto_server >/dev/null || need_pip+=("moto[server]")
command -v cargo-lambda >/dev/null || need_pip+=("cargo-lambda")
command -v sam >/dev/null || need_pip+=("aws-sam-cli")
command -v cfn-lint >/dev/null || need_pip+=("cfn-lint")
python3 -c 'import cfn_lint_serverless' 2>/dev/null || need_pip+=("cfn-lint-serverless")
# Zig: the linker cargo-lambda uses to cross-compile the arm64 functions (`sam build`).
python3 -c 'import ziglang' 2>/dev/null || command -v zig >/dev/null || need_pip+=("ziglang")
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing from PyPI: ${need_pip[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
fi
# moto_server needs its [server] extra (flask); a bare `moto` install lacks it.
python3 -c 'import flask, flask_cors' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "moto[server]"

if ! command -v prism >/dev/null; then
  echo "installing from npm: @stoplight/prism-cli"
  npm install --global --silent @stoplight/prism-cli
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The functions run on arm64 (template.yaml); `sam build` cross-compiles to it.
# rustup fetches the target from the Rust distribution servers, not a package registry:
# where those are out of reach, scripts/test.sh says so and skips `sam build`.
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu \
  || echo "warning: could not install the aarch64-unknown-linux-gnu target; sam build will be skipped"
hash -r
