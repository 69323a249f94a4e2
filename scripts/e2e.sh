#!/usr/bin/env bash
# End to end through the real Lambda runtime loop: a local DynamoDB and Twilio stand-in
# (devstack serve, seeded), `cargo lambda watch` running the function binaries with the
# Lambda Runtime API emulator, and `cargo lambda invoke` with the payloads in events/.
# Checks each result and what is left in the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo-lambda from .tools/ (scripts/install-tools.sh), first on PATH.
source scripts/tools-env.sh

DYNAMODB_PORT=${E2E_DYNAMODB_PORT:-18000}
INVOKE_PORT=${E2E_INVOKE_PORT:-19000}
work=$(mktemp -d)
passed=0
failed=0
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet -p devstack -p clean-expired-carts -p request-reviews -p derive-schedule -p send-messages -p daily-report
target/debug/devstack serve --port "$DYNAMODB_PORT" --prefix e2e --seed-carts 20 --seed-orders 6 >"$work/devstack.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^ready$' "$work/devstack.log" && break; sleep 0.1; done
grep -q '^ready$' "$work/devstack.log" || { cat "$work/devstack.log"; echo "devstack did not start"; exit 1; }
endpoint=$(sed -n 's/^AWS_ENDPOINT_URL_DYNAMODB=//p' "$work/devstack.log")
carts_table=$(sed -n 's/^CARTS_TABLE=//p' "$work/devstack.log")

# The functions' environment: what devstack printed, plus placeholder AWS credentials.
grep -E '^[A-Z_]+=' "$work/devstack.log" >"$work/function.env"
cat >>"$work/function.env" <<ENV
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AWS_REGION=eu-west-3
AWS_LAMBDA_LOG_FORMAT=JSON
REPLY_WEBHOOK_URL=https://127.0.0.1:$INVOKE_PORT/
ENV
cargo lambda watch --quiet --ignore-changes --invoke-port "$INVOKE_PORT" --timeout 120 \
  --env-file "$work/function.env" >"$work/watch.log" 2>&1 &
pids+=($!)

invoke() { # function event-file -> stdout: the function's answer
  cargo lambda invoke "$1" --invoke-port "$INVOKE_PORT" --data-file "$2" 2>&1
}

# Wait for the emulator to answer; the first invoke also waits for the build.
for _ in $(seq 1 120); do
  curl -s -o /dev/null "http://127.0.0.1:$INVOKE_PORT/" && break
  sleep 1
done

check() { # name, command that must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

count_carts() { target/debug/devstack count --endpoint "$endpoint" --table "$carts_table"; }

before=$(count_carts)
dry=$(invoke clean-expired-carts events/manual-dry-run.json)
check "dry run counts 20 expired carts and deletes none" \
  test "$(echo "$dry" | json_field wouldDelete)" = 20 -a "$(count_carts)" = "$before"

bad=$(invoke clean-expired-carts events/manual-bad.json || true)
check "a misspelt manual payload is refused by name" grep -q "unknown field \`dryrun\`" <<<"$bad"
check "a refused payload changes nothing" test "$(count_carts)" = "$before"

null_now=$(invoke clean-expired-carts events/manual-null-now.json || true)
check "a null field is refused by name, not read as absent" grep -q '`now` is null' <<<"$null_now"
python3 -c 'print("[" * 200 + "]" * 200)' >"$work/deep.json"
deep=$(invoke clean-expired-carts "$work/deep.json" || true)
check "a payload nested 200 deep is refused as InvalidPayload, by the function" \
  grep -q 'NonRetryable.InvalidPayload' <<<"$deep"
printf '{"now": %s}' 1e400 >"$work/huge-number.json"
huge=$(invoke clean-expired-carts "$work/huge-number.json" || true)
check "a number out of range is refused as InvalidPayload" grep -q 'NonRetryable.InvalidPayload' <<<"$huge"
month_ago=$(date -u -d '30 days ago' +%Y-%m-%dT%H:%M:%SZ)
printf '{"now": "%s"}' "$month_ago" >"$work/past-now.json"
past=$(invoke clean-expired-carts "$work/past-now.json" || true)
check "a past now without dryRun or backfill is refused" grep -q 'earlier than the real clock' <<<"$past"
check "refused payloads change nothing" test "$(count_carts)" = "$before"
check "each refusal is logged as a refused payload" test "$(grep -c 'refused payload' "$work/watch.log")" -ge 5

scheduled=$(invoke clean-expired-carts events/scheduler.json)
check "the scheduled run deletes the 20 expired carts" test "$(echo "$scheduled" | json_field deletedCount)" = 20
check "the result says success" test "$(echo "$scheduled" | json_field success)" = True
check "live and malformed carts stay (10 live + 2 malformed)" test "$(count_carts)" = 12

again=$(invoke clean-expired-carts events/eventbridge-scheduled.json)
check "a duplicate delivery deletes nothing more" test "$(echo "$again" | json_field deletedCount)" = 0

check "the sweeper's metrics reach CloudWatch as EMF" grep -q '"CartsDeleted":20' "$work/watch.log"
if grep -q '"run summary"' "$work/watch.log"; then
  check "the run summary is one JSON log line" grep -q '"deleted":20' "$work/watch.log"
else
  check "the run summary is logged" false
fi
if grep -Eq '\+33[0-9]{9}' "$work/watch.log"; then check "no phone number in clear in the logs" false; else check "no phone number in clear in the logs" true; fi

# request-reviews: 6 due orders (plus one not yet due, one too old, one reviewed, one
# with a bad phone) seeded by devstack; the Twilio stand-in accepts every message.
dry=$(invoke request-reviews events/manual-dry-run.json)
check "review dry run counts 6 messages to send" test "$(echo "$dry" | json_field wouldSend)" = 6
check "review dry run sends nothing" test "$(echo "$dry" | json_field sent)" = 0

reviews=$(invoke request-reviews events/scheduler.json)
check "the scheduled review run sends 6 requests" test "$(echo "$reviews" | json_field sent)" = 6
check "and skips 3 due orders with reasons" test "$(echo "$reviews" | json_field total)" = 9

duplicate=$(invoke request-reviews events/eventbridge-scheduled.json)
check "a duplicate delivery sends nothing" test "$(echo "$duplicate" | json_field sent)" = 0
check "and finds nothing left to do" test "$(echo "$duplicate" | json_field total)" = 0

bad_reviews=$(invoke request-reviews events/manual-bad.json || true)
check "request-reviews refuses a misspelt payload by name" grep -q "unknown field \`dryrun\`" <<<"$bad_reviews"
if grep -Eq '\+336[0-9]{8}' "$work/watch.log"; then check "no phone number in clear in the review logs" false; else check "no phone number in clear in the review logs" true; fi
if grep -q "local-stand-in-token" "$work/watch.log"; then check "the Twilio token is never logged" false; else check "the Twilio token is never logged" true; fi

# record-review-reply: customers answer the requests request-reviews just sent (to
# +3362000000N, orders order-due-000N). Twilio's POST is played by a Python helper that
# signs like Twilio: HMAC-SHA1 of the URL + the sorted parameters, keyed with the auth
# token, base64. The emulator serves the Function URL at /lambda-url/<name>/; the URL
# the function checks is REPLY_WEBHOOK_URL, set above to the one the requests are signed
# for (in AWS, without it, the Function URL Lambda routed the request by).
cargo build --quiet -p record-review-reply
reply_endpoint="http://127.0.0.1:$INVOKE_PORT/lambda-url/record-review-reply/"
signed_url="https://127.0.0.1:$INVOKE_PORT/"
reviews_table=$(sed -n 's/^REVIEWS_TABLE=//p' "$work/devstack.log")
auth_token=$(sed -n 's/^TWILIO_AUTH_TOKEN=//p' "$work/devstack.log")
post_reply() { # signed-url from message-sid body -> "STATUS BODY"
  python3 - "$auth_token" "$reply_endpoint" "$@" <<'PY'
import base64, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request
token, endpoint, signed_url, sender, sid, body = sys.argv[1:7]
params = {"From": "whatsapp:" + sender, "To": "whatsapp:+14155238886", "MessageSid": sid,
          "Body": body, "NumMedia": "0"}
payload = signed_url + "".join(name + params[name] for name in sorted(params))
signature = base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()
request = urllib.request.Request(endpoint, data=urllib.parse.urlencode(params).encode(), headers={
    "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
try:
    with urllib.request.urlopen(request, timeout=150) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
PY
}
count_reviews() { target/debug/devstack count --endpoint "$endpoint" --table "$reviews_table"; }

reviews_before=$(count_reviews)
forged=$(post_reply "https://127.0.0.1:1/" "+33620000000" "SMe2e00000000000000000000000000001" "1 horrible")
check "a reply signed for another URL is refused with 403" test "${forged%% *}" = 403
check "and records nothing" test "$(count_reviews)" = "$reviews_before"

thanks=$(post_reply "$signed_url" "+33620000000" "SMe2e00000000000000000000000000002" "4, très bon")
check "a signed reply is answered with TwiML thanks" grep -q '^200 .*<Response><Message>Merci' <<<"$thanks"
check "the Reviews table holds the review" test "$(count_reviews)" = $((reviews_before + 1))
check "the summary names the order and the rating" \
  grep -q '"outcome":"recorded".*"order_id":"order-due-0000","rating":4' "$work/watch.log"

retry=$(post_reply "$signed_url" "+33620000000" "SMe2e00000000000000000000000000002" "4, très bon")
check "Twilio's retry of the same MessageSid is thanked again" grep -q '^200 .*Merci' <<<"$retry"
check "and writes nothing more" test "$(count_reviews)" = $((reviews_before + 1))

prompt=$(post_reply "$signed_url" "+33620000001" "SMe2e00000000000000000000000000003" "Bonjour")
check "a reply without a rating gets a prompt" grep -q '^200 .*Répondez par un chiffre de 1' <<<"$prompt"
negative=$(post_reply "$signed_url" "+33620000001" "SMe2e00000000000000000000000000004" "1 - arrivé froid")
check "a negative review is recorded" test "$(count_reviews)" = $((reviews_before + 2))
check "and alerts the shop (logged locally: no ALERT_TOPIC_ARN)" \
  grep -q 'negative review: no alert channel configured' "$work/watch.log"
if grep -Eq '\+3362[0-9]{7}' "$work/watch.log"; then check "no phone number in clear in the reply logs" false; else check "no phone number in clear in the reply logs" true; fi

# derive-schedule and send-messages: a cart as the shop's app writes it, left two hours
# ago; its record, read from the table's stream, goes to derive-schedule as Lambda's event,
# which schedules its reminder; the dispatcher's next run sends it, once.
python3 - "$endpoint" "$carts_table" <<'PY'
import datetime, sys, boto3
endpoint, table = sys.argv[1:3]
created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
boto3.client("dynamodb", endpoint_url=endpoint, region_name="eu-west-3",
             aws_access_key_id="local", aws_secret_access_key="local").put_item(TableName=table, Item={
    "cartId": {"S": "cart-e2e-idle"}, "customerPhone": {"S": "+33620000009"},
    "createdAt": {"S": created.isoformat()}})
PY
target/debug/devstack stream-event --endpoint "$endpoint" --table "$carts_table" --key cart-e2e-idle >"$work/stream.json"
check "the cart's record is read from the stream" grep -q '"eventName": "INSERT"' "$work/stream.json"
derived=$(invoke derive-schedule "$work/stream.json")
check "derive-schedule applies the stream record with no batch item failure" grep -q '"batchItemFailures":\[\]' <<<"$derived"
sent=$(invoke send-messages events/scheduler.json)
check "send-messages sends the idle cart's reminder" test "$(json_field sent <<<"$sent")" = 1
again=$(invoke send-messages events/eventbridge-scheduled.json)
check "a duplicate delivery sends nothing" test "$(json_field total <<<"$again")" = 0

# daily-report: yesterday's figures, one read of the stats table; no channel configured here.
report=$(invoke daily-report events/manual-dry-run.json)
check "daily-report previews yesterday's report in a dry run" \
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["dryRun"] and r["success"] and "reviewConversion" in r["report"]))' "$report"
echo '{"dryrun": true}' >"$work/misspelt.json"
refused=$(invoke daily-report "$work/misspelt.json" || true)
check "daily-report refuses a misspelt field by name" grep -q "dryrun" <<<"$refused"

# A function whose settings are wrong answers the invocation with an error naming the
# variable (reported through the Runtime API's /runtime/init/error), instead of exiting
# and leaving the invoker waiting: a second emulator with no table names at all.
BAD_INVOKE_PORT=$((INVOKE_PORT + 1))
printf 'AWS_ACCESS_KEY_ID=local\nAWS_SECRET_ACCESS_KEY=local\nAWS_REGION=eu-west-3\n' >"$work/missing.env"
for function_and_variable in clean-expired-carts:CARTS_TABLE request-reviews:ORDERS_TABLE record-review-reply:ORDERS_TABLE send-messages:MESSAGES_TABLE daily-report:STATS_TABLE; do
  function=${function_and_variable%%:*}
  variable=${function_and_variable##*:}
  # One emulator per function: cargo lambda watch stops its scheduler after an init error.
  cargo lambda watch --quiet --ignore-changes --invoke-port "$BAD_INVOKE_PORT" --timeout 60 \
    --env-file "$work/missing.env" >"$work/watch-missing.log" 2>&1 &
  watch_pid=$!
  for _ in $(seq 1 60); do curl -s -o /dev/null "http://127.0.0.1:$BAD_INVOKE_PORT/" && break; sleep 1; done
  started=$(date +%s)
  answer=$(timeout 30 cargo lambda invoke "$function" --invoke-port "$BAD_INVOKE_PORT" --data-ascii '{}' 2>&1 || true)
  check "$function without its settings answers at once, naming $variable" \
    grep -q "NonRetryable.InitError.*$variable" <<<"$answer"
  check "$function's answer came within 10 s" test $(( $(date +%s) - started )) -lt 10
  kill "$watch_pid" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
done

echo "e2e: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "--- cargo lambda watch log ---"; tail -50 "$work/watch.log"
  exit 1
fi
