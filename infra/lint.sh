#!/usr/bin/env bash
# Lints template.yaml: SAM validation with cfn-lint, plain cfn-lint, and cfn-lint with
# the serverless rules (cfn-lint-serverless). Fails on any error or warning.
# Run from anywhere: ./infra/lint.sh
#
# Suppressions live next to the resources they concern, under
# `Metadata: cfn-lint: config: ignore_checks`, each with its reason in a comment.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TEMPLATE=template.yaml
REGION=eu-west-3

# The linters, pinned, from the project's venv (.tools/venv): installed there if missing,
# never into the system Python.
[[ -x .tools/venv/bin/sam && -x .tools/venv/bin/cfn-lint ]] || bash scripts/install-tools.sh
source scripts/tools-env.sh

# No telemetry from a lint run.
export SAM_CLI_TELEMETRY=0

echo "==> sam validate --lint ($(sam --version))"
# Offline: translation and linting need a region name but no AWS credentials.
sam validate --lint --template "$TEMPLATE" --region "$REGION"

echo "==> cfn-lint ($(cfn-lint --version))"
cfn-lint -- "$TEMPLATE"

echo "==> cfn-lint + cfn-lint-serverless rules"
# --append-rules takes one or more values, so the template goes after `--`
# (cfn-lint --append-rules cfn_lint_serverless.rules template.yaml would try to
# import "template" as a rules module).
cfn-lint --append-rules cfn_lint_serverless.rules -- "$TEMPLATE"

echo "==> lint OK"
