#!/usr/bin/env bash
# bench/serve_load.sh - load test of `llmos serve` from a second process with wrk.
#
# Starts `llmos serve --model stories260K.gguf` on a free loopback port, runs wrk for
# DURATION seconds (default 5) against GET /health and then against a small chat completion
# (8 tokens, greedy), and checks afterwards that the server still answers a chat request
# correctly. Prints wrk's figures and a summary line per run. Loopback only.
#
# Every request is authorized and audited through a kernel session. By default the server runs
# on a store in memory only (--no-store); STORE=1 gives it an encrypted store on disk in a
# temporary LLMOS_HOME, so that each request's audit record is a sealed, fsynced write.
#
# usage: bench/serve_load.sh [BUILD_DIR]   (default build; LLMOS_TESTDATA overrides the
#        test data folder; DURATION, CONNECTIONS set the load; STORE=1 as above)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/llmos
data=${LLMOS_TESTDATA:-$root/../shared/testdata}
model=$data/models/stories260K.gguf
duration=${DURATION:-5}
conns=${CONNECTIONS:-8}
command -v wrk >/dev/null || { echo "wrk is not installed (scripts/deps)"; exit 1; }
[ -x "$bin" ] || { echo "no llmos program at $bin (build first)"; exit 1; }
[ -r "$model" ] || { echo "test data absent: $model"; exit 1; }

tmp=$(mktemp -d /tmp/llmos-serve-load-XXXXXX)
store=--no-store
if [ "${STORE:-0}" = 1 ]; then
  store=
  export LLMOS_HOME=$tmp/home LLMOS_PASSPHRASE="serve load benchmark" LLMOS_KDF=interactive
fi
"$bin" serve --model "$model" --port 0 --queue 64 -t 1 $store >"$tmp/out" 2>"$tmp/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
url=
for _ in $(seq 100); do
  url=$(grep -o 'http://[^ ]*/v1' "$tmp/out" 2>/dev/null | head -1) && [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "llmos serve did not start:"; cat "$tmp/err"; exit 1; }
base=${url%/v1}
echo "llmos serve at $url (pid $pid)"

body='{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0}'
cat >"$tmp/chat.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA

run() { # name, wrk args...
  local name=$1; shift
  echo "== $name"
  wrk --latency "$@" | tee "$tmp/wrk.txt"
  local rps non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$tmp/wrk.txt")
  echo "summary: $name: ${rps} requests/s, ${non2xx:-0} non-2xx answers"
}
run "GET /health" -t 2 -c "$conns" -d "${duration}s" "$base/health"
run "POST /v1/chat/completions (8 tokens)" -t 2 -c "$conns" -d "${duration}s" -s "$tmp/chat.lua" \
  "$base/v1/chat/completions"

# the server still answers correctly after the load
reply=$(curl -s -w '\n%{http_code}' "$base/v1/chat/completions" -H 'Content-Type: application/json' -d "$body")
code=${reply##*$'\n'}
json=${reply%$'\n'*}
echo "after the load: HTTP $code: $json"
[ "$code" = 200 ] || { echo "FAIL: the server did not answer 200 after the load"; exit 1; }
echo "$json" | grep -q '"completion_tokens":8' || { echo "FAIL: wrong answer after the load"; exit 1; }
curl -s "$base/health"
echo "ok"
