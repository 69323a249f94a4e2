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

# Install the linters if missing (module names: cfnlint, cfn_lint_serverless, samcli).
missing=()
command -v sam >/dev/null 2>&1 || missing+=(aws-sam-cli)
command -v cfn-lint >/dev/null 2>&1 || missing+=(cfn-lint)
python3 -c 'import cfn_lint_serverless' >/dev/null 2>&1 || missing+=(cfn-lint-serverless)
if ((${#missing[@]})); then
    echo "==> pip install ${missing[*]}"
    python3 -m pip install --quiet "${missing[@]}"
fi

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
