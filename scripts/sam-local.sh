#!/usr/bin/env bash
# `sam local invoke` for every function, as users run it: the built artifacts, the
# template's own handler and environment, events/ files, plus an env-vars file that points
# the functions at local stand-ins (docs/sam-local.md).
#
# On a machine with no container engine this sets one up from the package registries:
# Debian's docker.io, qemu-user-static for arm64 (the template's architecture) on x86_64,
# and, when AWS's Lambda base image cannot be pulled, a stand-in for it built from a
# debootstrap root filesystem (infra/sam-local/Dockerfile).
#
# The functions run in containers on a docker network this script creates; DynamoDB
# (devstack serve, embedded dynoxide) and the Twilio stand-in, and moto for Secrets Manager
# and SNS, listen on that network's gateway address only.
#
#   SAM_BUILD_DIR=dir   use an existing `sam build --build-dir dir` instead of building
#   SAM_LOCAL_ARCH=x86_64   run x86_64 builds (a rewritten template; no qemu needed)
#   DEBIAN_MIRROR=url   where debootstrap fetches packages (default deb.debian.org)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools-env.sh
export SAM_CLI_TELEMETRY=0

arch=${SAM_LOCAL_ARCH:-arm64}
case $arch in
  arm64) debian_arch=arm64 ;;
  x86_64) debian_arch=amd64 ;;
  *) echo "SAM_LOCAL_ARCH must be arm64 or x86_64, not $arch" >&2; exit 2 ;;
esac
base_image=public.ecr.aws/lambda/provided:al2023-$arch
cache=.tools/sam-local
mkdir -p "$cache"
work=$(mktemp -d)
network=backoffice-sam-local-$$
pids=()
started_dockerd=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  docker network rm "$network" >/dev/null 2>&1 || true
  if [[ -n $started_dockerd ]]; then kill "$started_dockerd" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n--> %s\n' "$*"; }
skip() { echo "SKIPPED: sam local invoke: $*"; exit 0; }

# --- the container engine -------------------------------------------------------------
need_packages=()
command -v dockerd >/dev/null || docker info >/dev/null 2>&1 || need_packages+=(docker.io)
if [[ $arch == arm64 && $(uname -m) != aarch64 && ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  command -v update-binfmts >/dev/null && [[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P || -x /usr/bin/qemu-aarch64-static ]] ||
    need_packages+=(qemu-user-static binfmt-support)
fi
if ! docker image inspect "$base_image" >/dev/null 2>&1 && ! command -v debootstrap >/dev/null; then
  need_packages+=(debootstrap)
fi
if ((${#need_packages[@]})); then
  step "installing ${need_packages[*]} (Debian packages)"
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "needs root and apt-get to install ${need_packages[*]}; install them (or Docker) and run again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  step "starting dockerd"
  command -v dockerd >/dev/null || skip "no container engine (dockerd) on this machine"
  dockerd >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  if ! docker info >/dev/null 2>&1; then
    tail -n 5 "$work/dockerd.log"
    skip "the container engine cannot start on this machine (dockerd's last lines above)"
  fi
fi

if [[ $arch == arm64 && $(uname -m) != aarch64 ]]; then
  if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    step "registering qemu-aarch64 with binfmt_misc (arm64 binaries on $(uname -m))"
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
  fi
  grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
    { echo "qemu-aarch64 is not enabled in binfmt_misc: run arm64 builds elsewhere, or SAM_LOCAL_ARCH=x86_64" >&2; exit 1; }
fi

# --- the Lambda base image --------------------------------------------------------------
if docker image inspect "$base_image" >/dev/null 2>&1; then
  echo "base image: $base_image ($(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.title"}}' "$base_image" | grep . || echo "AWS's"))"
elif timeout 60 docker pull -q "$base_image" >/dev/null 2>&1; then
  echo "base image: $base_image (pulled)"
else
  step "no registry answers for $base_image: building the stand-in (infra/sam-local/Dockerfile)"
  rootfs_tar=$cache/rootfs-bookworm-minbase-$debian_arch.tar
  if [[ ! -s $rootfs_tar ]]; then
    rootfs=$work/rootfs
    debootstrap --arch="$debian_arch" --variant=minbase --include=ca-certificates bookworm "$rootfs" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log"; exit 1; }
    tar -C "$rootfs" -cf "$rootfs_tar.partial" . && mv "$rootfs_tar.partial" "$rootfs_tar"
    rm -rf "$rootfs"
  fi
  mkdir "$work/image"
  cp infra/sam-local/Dockerfile "$work/image/"
  ln "$rootfs_tar" "$work/image/rootfs.tar" 2>/dev/null || cp "$rootfs_tar" "$work/image/rootfs.tar"
  docker build -q --platform "linux/${arch/x86_64/amd64}" -t "$base_image" "$work/image" >/dev/null 2>"$work/build.log" ||
    { cat "$work/build.log"; exit 1; }
  rm -rf "$work/image"
  # SAM's emulation layer (the Runtime Interface Emulator on top of the base image) is
  # cached under this tag; an old one would hide the new base image.
  docker rmi "public.ecr.aws/lambda/provided:al2023-rapid-$arch" >/dev/null 2>&1 || true
fi

# --- the artifacts ------------------------------------------------------------------------
if [[ -n ${SAM_BUILD_DIR:-} ]]; then
  build=$SAM_BUILD_DIR
elif [[ $arch == arm64 ]]; then
  step "sam build"
  build=$work/build
  sam build --template template.yaml --build-dir "$build"
else
  step "sam build, with Architectures: [x86_64] (SAM_LOCAL_ARCH)"
  build=$work/build
  sed 's/^    Architectures: \[arm64\]$/    Architectures: [x86_64]/' template.yaml >"$work/template-x86_64.yaml"
  grep -q '^    Architectures: \[x86_64\]$' "$work/template-x86_64.yaml" ||
    { echo "template.yaml's Globals no longer say Architectures: [arm64]" >&2; exit 1; }
  sam build --template "$work/template-x86_64.yaml" --base-dir . --build-dir "$build"
fi
test -f "$build/template.yaml" || { echo "no $build/template.yaml: not a sam build directory" >&2; exit 1; }
# The stand-in's glibc is newer than AL2023's 2.34 (docs/sam-local.md): a bootstrap that runs
# here must not need a newer symbol, or it would run locally and fail in AWS.
for bootstrap in "$build"/*/bootstrap; do
  newest=$(readelf --dyn-syms -W "$bootstrap" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n 1)
  if [[ $(printf '%s\n' "${newest#GLIBC_}" 2.34 | sort -V | tail -n 1) != 2.34 ]]; then
    echo "FAIL: $bootstrap needs $newest, newer than Amazon Linux 2023's glibc 2.34" >&2
    exit 1
  fi
  echo "$(basename "$(dirname "$bootstrap")")/bootstrap: glibc symbols up to ${newest:-none}"
done

# --- the local stand-ins, on a network of their own ---------------------------------------
step "local DynamoDB, Twilio stand-in and moto on docker network $network"
cargo build --quiet -p devstack
docker network create "$network" >/dev/null
gateway=$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$network")
dynamodb_port=${SAM_LOCAL_DYNAMODB_PORT:-18100}
moto_port=${SAM_LOCAL_MOTO_PORT:-18101}
target/debug/devstack serve --host "$gateway" --port "$dynamodb_port" --prefix shop \
  --seed-carts 20 --seed-orders 6 >"$work/devstack.log" 2>&1 &
pids+=($!)
moto_server -H "$gateway" -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^ready$' "$work/devstack.log" && break; sleep 0.1; done
grep -q '^ready$' "$work/devstack.log" || { cat "$work/devstack.log"; echo "devstack did not start" >&2; exit 1; }
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$gateway:$moto_port/" && break; sleep 0.1; done
stack_var() { sed -n "s/^$1=//p" "$work/devstack.log"; }
dynamodb=$(stack_var AWS_ENDPOINT_URL_DYNAMODB)
moto=http://$gateway:$moto_port
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=eu-west-3 AWS_REGION=eu-west-3

# The Twilio secret and the alert topic, as the stack would have them.
read -r secret_arn topic_arn report_topic_arn < <(python3 - "$moto" "$(stack_var TWILIO_ACCOUNT_SID)" "$(stack_var TWILIO_AUTH_TOKEN)" <<'PY'
import json, sys, boto3
endpoint, account_sid, auth_token = sys.argv[1:4]
secret = boto3.client("secretsmanager", endpoint_url=endpoint).create_secret(
    Name="shop/twilio", SecretString=json.dumps({"accountSid": account_sid, "authToken": auth_token}))
sns = boto3.client("sns", endpoint_url=endpoint)
topic = sns.create_topic(Name="shop-negative-reviews")
report_topic = sns.create_topic(Name="shop-daily-report")
print(secret["ARN"], topic["TopicArn"], report_topic["TopicArn"])
PY
)

# Only what differs locally: endpoints, table names (a Ref is the logical id under sam
# local), the secret, the sender. Everything else is the template's own environment.
python3 - "$work/env.json" <<PY
import json, sys
common = {
    "ORDERS_TABLE": "$(stack_var ORDERS_TABLE)",
    "REVIEWS_TABLE": "$(stack_var REVIEWS_TABLE)",
    "CONSENT_TABLE": "$(stack_var CONSENT_TABLE)",
    "STATS_TABLE": "$(stack_var STATS_TABLE)",
    "MESSAGES_TABLE": "$(stack_var MESSAGES_TABLE)",
    # The function URL's attribute does not resolve under sam local: no status callbacks.
    "STATUS_CALLBACK_URL": "",
    "TWILIO_SECRET_ARN": "$secret_arn",
    "TWILIO_WHATSAPP_FROM": "$(stack_var TWILIO_WHATSAPP_FROM)",
    "TWILIO_API_BASE_URL": "$(stack_var TWILIO_API_BASE_URL)",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER": "$moto",
}
# The checks must not depend on the time of day they run at.
no_quiet_hours = {"QUIET_HOURS_START": "00:00", "QUIET_HOURS_END": "00:00"}
json.dump({
    "Parameters": {"AWS_ENDPOINT_URL_DYNAMODB": "$dynamodb"},
    "CleanExpiredCartsFunction": {"CARTS_TABLE": "$(stack_var CARTS_TABLE)"},
    "DeriveScheduleFunction": {"CARTS_TABLE": "$(stack_var CARTS_TABLE)", "ORDERS_TABLE": "$(stack_var ORDERS_TABLE)",
                               "MESSAGES_TABLE": "$(stack_var MESSAGES_TABLE)", "CONSENT_TABLE": "$(stack_var CONSENT_TABLE)",
                               "STATS_TABLE": "$(stack_var STATS_TABLE)", **no_quiet_hours},
    "SendMessagesFunction": {**common, "CARTS_TABLE": "$(stack_var CARTS_TABLE)", "MESSAGES_TABLE": "$(stack_var MESSAGES_TABLE)",
                             **no_quiet_hours},
    "RequestReviewsFunction": {**common, "REVIEW_TEMPLATE_SID": "$(stack_var REVIEW_TEMPLATE_SID)", **no_quiet_hours},
    "RecordReviewReplyFunction": {**common, "AWS_ENDPOINT_URL_SNS": "$moto", "ALERT_TOPIC_ARN": "$topic_arn"},
    "DailyReportFunction": {"STATS_TABLE": "$(stack_var STATS_TABLE)", "AWS_ENDPOINT_URL_SNS": "$moto",
                            "REPORT_TOPIC_ARN": "$report_topic_arn"},
}, open(sys.argv[1], "w"), indent=2)
PY

# --- the invocations -------------------------------------------------------------------------
passed=0
failed=0
check() { # name, command that must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
invoke() { # function event-file [env-vars-file] -> stdout: the function's answer; logs in $work/<function>.log
  sam local invoke --template "$build/template.yaml" --env-vars "${3:-$work/env.json}" \
    --docker-network "$network" --skip-pull-image --region eu-west-3 -e "$2" "$1" \
    2>>"$work/$1.log"
}
json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
count_carts() { target/debug/devstack count --endpoint "$dynamodb" --table "$(stack_var CARTS_TABLE)"; }

step "CleanExpiredCartsFunction"
dry=$(invoke CleanExpiredCartsFunction events/manual-dry-run.json)
check "a dry run counts the 20 expired carts" test "$(json_field wouldDelete <<<"$dry")" = 20
swept=$(invoke CleanExpiredCartsFunction events/scheduler.json)
check "the scheduled run deletes them" test "$(json_field deletedCount <<<"$swept")" = 20
check "live and malformed carts stay (10 live + 2 malformed)" test "$(count_carts)" = 12
check "the run summary is logged" grep -q '"run summary"' "$work/CleanExpiredCartsFunction.log"
check "and Lambda's REPORT line" grep -q 'REPORT RequestId' "$work/CleanExpiredCartsFunction.log"

step "DeriveScheduleFunction (a DynamoDB Streams event)"
# A cart as the shop's app writes it (no expiryShard, no expiresAt), left two hours ago,
# and its record as Lambda would deliver it, read from the table's stream.
python3 - "$dynamodb" "$(stack_var CARTS_TABLE)" <<'PY'
import datetime, sys, boto3
endpoint, table = sys.argv[1:3]
created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
boto3.client("dynamodb", endpoint_url=endpoint).put_item(TableName=table, Item={
    "cartId": {"S": "cart-sam-local"}, "customerPhone": {"S": "+33612340000"},
    "createdAt": {"S": created.isoformat()}})
PY
target/debug/devstack stream-event --endpoint "$dynamodb" --table "$(stack_var CARTS_TABLE)" --key cart-sam-local \
  >"$work/stream.json"
derived=$(invoke DeriveScheduleFunction "$work/stream.json")
check "the stream record is applied with no batch item failure" \
  python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["batchItemFailures"] != [])' "$derived"
check "the cart gets its derived attributes" grep -q '"derived":1' "$work/DeriveScheduleFunction.log"
check "and its abandoned-cart reminder is scheduled" grep -q '"messages":1' "$work/DeriveScheduleFunction.log"
again=$(invoke DeriveScheduleFunction "$work/stream.json")
check "the same record again writes nothing" grep -q '"superseded":1' "$work/DeriveScheduleFunction.log"

step "SendMessagesFunction"
sent=$(invoke SendMessagesFunction events/scheduler.json)
check "the scheduled run sends the cart's reminder through the Twilio stand-in" \
  test "$(json_field sent <<<"$sent")" = 1
again=$(invoke SendMessagesFunction events/eventbridge-scheduled.json)
check "a duplicate delivery sends nothing" test "$(json_field total <<<"$again")" = 0

step "RequestReviewsFunction"
reviews=$(invoke RequestReviewsFunction events/scheduler.json)
check "the scheduled run sends 6 review requests through the Twilio stand-in" \
  test "$(json_field sent <<<"$reviews")" = 6
again=$(invoke RequestReviewsFunction events/eventbridge-scheduled.json)
check "a duplicate delivery sends nothing" test "$(json_field sent <<<"$again")" = 0

step "RecordReviewReplyFunction (a Function URL event signed as Twilio signs)"
webhook_url=https://sam-local.lambda-url.eu-west-3.on.aws/
target/debug/devstack webhook-event --url "$webhook_url" --from +33620000000 \
  --sid SM5a10ca10000000000000000000000001 --body "5 parfait" >"$work/reply.json"
reply=$(invoke RecordReviewReplyFunction "$work/reply.json")
check "a signed reply is answered 200 with TwiML thanks (in French, the default ShopLocale)" \
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["statusCode"] == 200 and "Merci" in r["body"]))' "$reply"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); e["body"]=e["body"].replace("5", "1"); print(json.dumps(e))' \
  "$work/reply.json" >"$work/tampered.json"
tampered=$(invoke RecordReviewReplyFunction "$work/tampered.json")
check "a reply changed after signing is refused 403" test "$(json_field statusCode <<<"$tampered")" = 403
target/debug/devstack webhook-event --url "$webhook_url" --from +33620000001 \
  --sid SM5a10ca10000000000000000000000002 --body "1 arrivé froid" >"$work/negative.json"
negative=$(invoke RecordReviewReplyFunction "$work/negative.json")
check "a rating of 1 is recorded and answered 200" test "$(json_field statusCode <<<"$negative")" = 200
check "and the shop is alerted through SNS" grep -q '"alert":"sent"' "$work/RecordReviewReplyFunction.log"

step "DailyReportFunction"
preview=$(invoke DailyReportFunction events/manual-dry-run.json)
check "a dry run reads yesterday's figures and sends nothing" \
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["dryRun"] and r["sent"] == [] and "orders" in r["report"]))' "$preview"
report=$(invoke DailyReportFunction events/scheduler.json)
check "the scheduled run e-mails the report through SNS" \
  python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["sent"] != ["email"])' "$report"
again=$(invoke DailyReportFunction events/eventbridge-scheduled.json)
check "a duplicate delivery sends it no second time" \
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["sent"] == [] and r["skipped"] == {"email": "already_sent"}))' "$again"

step "a function whose settings are wrong"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); e["CleanExpiredCartsFunction"]["CARTS_TABLE"]=""; print(json.dumps(e))' \
  "$work/env.json" >"$work/env-missing.json"
missing=$(invoke CleanExpiredCartsFunction events/scheduler.json "$work/env-missing.json" || true)
check "answers the invocation with InitError naming the variable" \
  grep -q 'InitError.*CARTS_TABLE\|CARTS_TABLE.*InitError' <<<"$missing"
if grep -Eq '\+336[0-9]{8}' "$work"/*Function.log; then check "no phone number in clear in the logs" false; else check "no phone number in clear in the logs" true; fi

echo
echo "sam local invoke: $passed passed, $failed failed"
if ((failed)); then
  for log in "$work"/*Function.log; do echo "== $log"; tail -n 30 "$log"; done
  exit 1
fi
