#!/usr/bin/env bash
# bench/serve_load.sh - load test of `llmos serve` from a second process with wrk.
#
# Starts `llmos serve --model stories260K.gguf` on a free loopback port, runs wrk for
# DURATION seconds (default 5) against GET /health and then against a small chat completion
# (8 tokens, greedy); then STREAMS (default 32) clients each stream chat completions (32
# tokens) one after another for DURATION seconds, and the script reports errors, p50/p99 of
# the time to the first byte and of the whole request, and the tokens a second of all
# streams together. It checks afterwards that the server still answers a chat request
# correctly. Prints wrk's figures and a summary line per run. Loopback only.
#
# Every request is authorized and audited through a kernel session. By default the server runs
# on a store in memory only (--no-store); STORE=1 gives it an encrypted store on disk in a
# temporary LLMOS_HOME, so that each request's audit record is a sealed, fsynced write.
#
# usage: bench/serve_load.sh [BUILD_DIR]   (default build; LLMOS_TESTDATA overrides the
#        test data folder; DURATION, CONNECTIONS, STREAMS set the load; STORE=1 as above;
#        SERVE_ARGS adds options to llmos serve, e.g. "--max-seqs 8")
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
# shellcheck disable=SC2086 # SERVE_ARGS is a list of options
# (all clients come from one address: the per-address limit must let them all in)
"$bin" serve --model "$model" --port 0 --queue 64 --max-per-address 1024 -t 1 $store \
  ${SERVE_ARGS:-} >"$tmp/out" 2>"$tmp/err" &
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

# STREAMS clients, each streaming one chat completion after another until the deadline: one
# line per request (http code, time to first byte, total time, completion tokens from the
# stream's usage chunk, [DONE] seen)
streams=${STREAMS:-32}
sbody='{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":32,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
stream_client() { # index
  local deadline=$(($(date +%s) + duration)) n=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    local f=$tmp/s$1.$n
    local w
    w=$(curl -sN -o "$f" -w '%{http_code} %{time_starttransfer} %{time_total}' \
      "$base/v1/chat/completions" -H 'Content-Type: application/json' -d "$sbody" || echo "000 0 0")
    local events done_seen
    events=$(grep -o '"completion_tokens":[0-9]*' "$f" 2>/dev/null | tail -1 | cut -d: -f2)
    done_seen=$(grep -c '^data: \[DONE\]' "$f" 2>/dev/null || true)
    echo "$w ${events:-0} ${done_seen:-0}" >>"$tmp/streams.txt"
    rm -f "$f"
    n=$((n + 1))
  done
}
echo "== $streams streaming clients, ${duration}s"
t0=$(date +%s.%N)
clients=()
for i in $(seq "$streams"); do
  stream_client "$i" &
  clients+=($!)
done
wait "${clients[@]}"
t1=$(date +%s.%N)
awk -v secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v streams="$streams" '
  { n++; if ($1 != 200 || $5 < 1) err++; ttfb[n] = $2; tot[n] = $3; tokens += $4 }
  function pct(a, p,   m, i, j, t) {
    m = n; for (i = 1; i <= m; i++) s[i] = a[i]
    for (i = 2; i <= m; i++) { t = s[i]; for (j = i - 1; j >= 1 && s[j] > t; j--) s[j + 1] = s[j]; s[j + 1] = t }
    i = int(p * m + 0.999999); if (i < 1) i = 1; return s[i]
  }
  END {
    printf "summary: %d streaming clients: %d requests, %d errors; first byte p50 %.0f ms p99 %.0f ms; " \
           "request p50 %.0f ms p99 %.0f ms; %.1f tokens/s in all\n", streams, n, err + 0,
           1000 * pct(ttfb, 0.5), 1000 * pct(ttfb, 0.99), 1000 * pct(tot, 0.5), 1000 * pct(tot, 0.99),
           tokens / secs
    if (err > 0) exit 1
  }' "$tmp/streams.txt" || { echo "FAIL: streaming clients saw errors"; exit 1; }

# the server still answers correctly after the load
reply=$(curl -s -w '\n%{http_code}' "$base/v1/chat/completions" -H 'Content-Type: application/json' -d "$body")
code=${reply##*$'\n'}
json=${reply%$'\n'*}
echo "after the load: HTTP $code: $json"
[ "$code" = 200 ] || { echo "FAIL: the server did not answer 200 after the load"; exit 1; }
echo "$json" | grep -q '"completion_tokens":8' || { echo "FAIL: wrong answer after the load"; exit 1; }
curl -s "$base/health"
echo "ok"
