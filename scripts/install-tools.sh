#!/usr/bin/env bash
# Installs the tools the tests and the local stack need, at pinned versions, into .tools/
# (git-ignored) at the repository root, never into the system Python or global npm:
#   .tools/venv   a Python venv with scripts/tools-requirements.txt (moto_server,
#                 cargo-lambda, ziglang, sam, cfn-lint, cfn-lint-serverless)
#   .tools/node   npm packages (prism), binaries in .tools/node/node_modules/.bin
# plus rustup components and the arm64 target. `source scripts/tools-env.sh` puts the tools
# first on PATH. Safe to run again: each part is skipped while its stamp matches its pins
# (a change of pins or of the Python/Node version rebuilds that part from scratch).
set -euo pipefail
cd "$(dirname "$0")/.."

tools=$PWD/.tools
requirements=scripts/tools-requirements.txt
# The newest Prism that runs on Node 20 (5.15 and later need Node 24).
prism_cli="@stoplight/prism-cli@5.14.2"

# The Python to build the venv from: the one python3 runs, or its base when python3 is
# already a venv's (for instance this venv's, after sourcing tools-env.sh).
base_python=$(python3 -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
python_stamp=$( { cat "$requirements"; "$base_python" --version; } | sha256sum | cut -d' ' -f1)
if [[ -x $tools/venv/bin/python3 && "$(cat "$tools/venv/.stamp" 2>/dev/null)" == "$python_stamp" ]]; then
  echo "Python tools up to date in .tools/venv"
else
  echo "installing the Python tools into .tools/venv ($requirements)"
  rm -rf "$tools/venv"
  "$base_python" -m venv "$tools/venv"
  "$tools/venv/bin/python3" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements"
  "$tools/venv/bin/python3" -m pip check --disable-pip-version-check >/dev/null
  echo "$python_stamp" >"$tools/venv/.stamp"
fi

node_stamp="$prism_cli node-$(node --version)"
if [[ -x $tools/node/node_modules/.bin/prism && "$(cat "$tools/node/.stamp" 2>/dev/null)" == "$node_stamp" ]]; then
  echo "npm tools up to date in .tools/node"
else
  echo "installing $prism_cli into .tools/node"
  rm -rf "$tools/node"
  mkdir -p "$tools/node"
  npm install --prefix "$tools/node" --save-exact --engine-strict \
    --no-fund --no-audit --no-update-notifier --loglevel=error "$prism_cli"
  echo "$node_stamp" >"$tools/node/.stamp"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The functions run on arm64 (template.yaml); `sam build` cross-compiles to it.
# rustup fetches the target from the Rust distribution servers, not a package registry:
# where those are out of reach, scripts/test.sh says so and skips `sam build`.
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu \
  || echo "warning: could not install the aarch64-unknown-linux-gnu target; sam build will be skipped"
