#!/usr/bin/env bash
# Starts Prism as a contract-checking stand-in for Twilio's Messages API, serving Twilio's
# own OpenAPI description from shared/ (beside the repository). Prism answers a request that
# breaks the contract with HTTP 422, which is what the contract test relies on.
#
#   scripts/prism.sh [PORT]        # default 4010
#   TWILIO_CONTRACT_URL=http://127.0.0.1:4010 cargo test -p backoffice --test stand_ins twilio_contract
#
# Uses the pinned @stoplight/prism-cli in .tools/node, installing it there (scripts/install-tools.sh)
# when it is missing; never a global npm install.
set -euo pipefail

port="${1:-4010}"
script_dir="$(cd "$(dirname "$0")" && pwd)"
spec="$script_dir/../../shared/contracts/twilio/twilio_api_v2010.json"

if [[ ! -f "$spec" ]]; then
    echo "Twilio's OpenAPI description is missing: $spec" >&2
    echo "shared/ must sit beside the repository (shared/contracts/twilio/)." >&2
    exit 1
fi

[[ -x "$script_dir/../.tools/node/node_modules/.bin/prism" ]] || bash "$script_dir/install-tools.sh" >&2
source "$script_dir/tools-env.sh"

# --errors: answer 422 for a request that does not match the spec, instead of a 201.
exec prism mock --errors --host 127.0.0.1 --port "$port" "$spec"
