#!/usr/bin/env bash
# A walkthrough of bus's HTTP API with curl: publish, batch, pull, stream, a durable consumer
# with a manual ack, request/reply, and errors as JSON. Each step checks the broker's answer
# and stops the script (exit 1, "FAILED: <step>") when it is not what the API promises.
#
#   cargo run --release -p bus-cli -- server     # a broker on 127.0.0.1:2021 (README)
#   bash examples/curl.sh                        # BUS_URL=http://host:port to point elsewhere
#
# broker/tests/curl_walkthrough.rs runs it against a fresh broker. Every curl is bounded by
# --max-time; nothing here waits without a bound.
set -euo pipefail

BUS_URL="${BUS_URL:-http://127.0.0.1:2021}"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# check NAME STATUS NEEDLE CURL-ARGS...: runs curl, and requires the HTTP status and a piece of
# the body; the body is left in $body.
check() {
  local name=$1 want=$2 needle=$3 out status
  shift 3
  out=$(curl -sS --max-time 10 -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  if [[ $status != "$want" || $body != *"$needle"* ]]; then
    echo "FAILED: $name: expected $want with $needle, got $status: $body" >&2
    exit 1
  fi
  echo "ok: $name"
}

# 1. Publish one event: 201 and its receipt once it is durable.
check "publish" 201 '"sequence":' -X POST "$BUS_URL/v1/events/user.created" \
  -H 'Content-Type: application/json' -d '{"name":"ada"}'

# 2. Publish a batch: one receipt per event, all durable together.
check "batch" 201 '"receipts":[' -X POST "$BUS_URL/v1/events" \
  -H 'Content-Type: application/json' \
  -d '[{"subject":"user.created","payload":{"name":"grace"}},{"subject":"user.deleted","payload":"ada"}]'

# 3. Pull a page from the oldest event: the three events and a cursor to go on from.
check "pull" 200 '"cursor":' "$BUS_URL/v1/events?pattern=user.%3E&from=oldest&limit=10"
[[ $(grep -o '"subject":"user\.' <<<"$body" | wc -l) -ge 3 ]] || { echo "FAILED: pull: fewer than 3 events: $body" >&2; exit 1; }

# 4. Stream (Server-Sent Events): the same three from the oldest; awk stops after the third.
events=$(curl -sN --max-time 10 "$BUS_URL/v1/stream?pattern=user.%3E&from=oldest" \
  | awk '/^data: \{"id"/ { print; if (++n == 3) exit }' || true)
[[ $(wc -l <<<"$events") -eq 3 && $events == *'"name":"grace"'* ]] || { echo "FAILED: stream: $events" >&2; exit 1; }
echo "ok: stream"

# 5. A durable consumer with manual acks: a member attaches taking one delivery; while it
#    holds it, the delivery is acked by id and the consumer has nothing pending; deleting the
#    consumer then ends the member's stream.
curl -sN --max-time 15 \
  "$BUS_URL/v1/stream?pattern=user.%3E&from=oldest&durable=walkthrough&ack=manual&limit=1" \
  >"$work/member" 2>/dev/null &
member=$!
for _ in $(seq 100); do grep -q '^data: {"id"' "$work/member" 2>/dev/null && break; sleep 0.05; done
first=$(grep -m1 '^data: {"id"' "$work/member" || true)
id=$(sed -n 's/^data: {"id":"\([^"]*\)".*/\1/p' <<<"$first")
[[ -n $id && $first == *'"delivery_count":1'* ]] || { echo "FAILED: attach: $first" >&2; exit 1; }
echo "ok: attach (got $id)"
check "ack" 200 '"status":"acked"' -X POST "$BUS_URL/v1/consumers/walkthrough/events/$id/ack"
check "consumer" 200 '"pending":0' "$BUS_URL/v1/consumers/walkthrough"
check "delete consumer" 200 '"deleted":"walkthrough"' -X DELETE "$BUS_URL/v1/consumers/walkthrough"
wait "$member" || true
grep -q 'unknown_consumer' "$work/member" || { echo "FAILED: the member's stream did not end with unknown_consumer" >&2; exit 1; }
echo "ok: member stream ended"

# 6. Request/reply: a responder follows rpc.user.> and answers the first request at its
#    reply_to subject; the caller's one POST gets the reply.
(
  curl -sN --max-time 15 "$BUS_URL/v1/stream?pattern=rpc.user.%3E" | while IFS= read -r line; do
    case $line in
      'event: subscribed') : >"$work/ready" ;;
      data:*'"reply_to":"'*)
        to=$(sed -n 's/.*"reply_to":"\([^"]*\)".*/\1/p' <<<"$line")
        curl -sS --max-time 5 -X POST "$BUS_URL/v1/events/$to" \
          -H 'Content-Type: application/json' -d '{"id":7,"name":"ada"}' >/dev/null
        break ;;
    esac
  done
) >/dev/null 2>&1 &
responder=$!
for _ in $(seq 100); do [[ -e $work/ready ]] && break; sleep 0.05; done
[[ -e $work/ready ]] || { echo "FAILED: the responder did not subscribe" >&2; exit 1; }
check "request" 200 '"name":"ada"' -X POST "$BUS_URL/v1/requests/rpc.user.get?timeout=5s" -d '7'
kill "$responder" 2>/dev/null || true

# 7. Nobody listens on rpc.nobody: 503 at once, and nothing is stored.
check "no responders" 503 '"code":"no_responders"' -X POST "$BUS_URL/v1/requests/rpc.nobody.get" -d '1'

# 8. Every error is JSON with a stable code and a human message.
check "error as JSON" 400 '"code":"invalid_subject"' -X POST "$BUS_URL/v1/events/a..b" -d 'x'

echo "walkthrough done"
