#!/usr/bin/env bash
# run_web.sh - the web UI in a real browser: make accounts alice, bob and carol, start
# `llmos serve --accounts --tls-self-signed` on stories260K (and a second one, for carol, on
# scripted_openai_server.mjs, a test double whose model calls a tool), and drive Debian's chromium
# (headless, through playwright-core) with web_ui.browser.mjs. Screenshots of each page go to
# $LLMOS_SCREENSHOTS (default ./web-ui-screenshots).
#
# Needs LLMOS_BIN and LLMOS_TESTDATA (ctest sets both). Exits 77 (skip) with a message when
# node, chromium, node_modules/playwright-core (scripts/deps installs them) or the test data
# are absent; nothing is downloaded here.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model="${LLMOS_TESTDATA:-}/models/stories260K.gguf"
chromium="${LLMOS_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if ! command -v node >/dev/null 2>&1; then echo "node is not installed (scripts/deps)"; exit 77; fi
if [ -z "$chromium" ]; then echo "chromium is not installed (scripts/deps)"; exit 77; fi
if [ ! -d "$here/node_modules/playwright-core" ]; then echo "$here/node_modules lacks playwright-core (run scripts/deps)"; exit 77; fi
if [ ! -r "$model" ]; then echo "test data (models/stories260K.gguf) is absent"; exit 77; fi
if [ ! -x "${LLMOS_BIN:-}" ]; then echo "LLMOS_BIN is not the llmos program" >&2; exit 1; fi

tmp=$(mktemp -d /tmp/llmos-test-web-XXXXXX)
export LLMOS_HOME="$tmp/home" LLMOS_KDF=test-weak
shots="${LLMOS_SCREENSHOTS:-$PWD/web-ui-screenshots}"
mkdir -p "$shots"
LLMOS_USER_PASSPHRASE=alice-passphrase "$LLMOS_BIN" user add alice </dev/null >/dev/null || exit 1
LLMOS_USER_PASSPHRASE=bob-passphrase "$LLMOS_BIN" user add bob </dev/null >/dev/null || exit 1
LLMOS_USER_PASSPHRASE=carol-passphrase "$LLMOS_BIN" user add carol </dev/null >/dev/null || exit 1
# an operator's key with every right, to read the server's own audit log
admin=$("$LLMOS_BIN" key new admin --file "$tmp/keys.json" --rights all) || exit 1
"$LLMOS_BIN" serve --model "$model" --port 0 --accounts --tls-self-signed --keys "$tmp/keys.json" \
  -t 1 --no-store >"$tmp/out" 2>"$tmp/err" &
pid=$!
# a second server on the scripted test double of an OpenAI server, whose model calls a tool
node "$here/scripted_openai_server.mjs" >"$tmp/fake" 2>&1 &
fake=$!
pid2=
cleanup() {
  kill -TERM "$pid" $pid2 "$fake" 2>/dev/null; wait "$pid" $pid2 "$fake" 2>/dev/null; rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 50); do grep -q listening "$tmp/fake" 2>/dev/null && break; sleep 0.1; done
fport=$(awk '/listening/ {print $2}' "$tmp/fake")
[ -n "$fport" ] || { echo "the scripted OpenAI server did not start"; cat "$tmp/fake"; exit 1; }
"$LLMOS_BIN" serve --api "http://127.0.0.1:$fport/v1" --api-model scripted-test --port 0 \
  --accounts --tls-self-signed --no-store >"$tmp/out2" 2>"$tmp/err2" &
pid2=$!
url=
for _ in $(seq 100); do
  url=$(grep -o 'web UI https://[^ ]*/' "$tmp/out" 2>/dev/null | head -1 | cut -d' ' -f3)
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then echo "llmos serve exited:"; cat "$tmp/err"; exit 1; fi
  sleep 0.1
done
[ -n "$url" ] || { echo "llmos serve printed no address"; cat "$tmp/err"; exit 1; }
url2=
for _ in $(seq 100); do
  url2=$(grep -o 'web UI https://[^ ]*/' "$tmp/out2" 2>/dev/null | head -1 | cut -d' ' -f3)
  [ -n "$url2" ] && break
  if ! kill -0 "$pid2" 2>/dev/null; then echo "llmos serve --api exited:"; cat "$tmp/err2"; exit 1; fi
  sleep 0.1
done
[ -n "$url2" ] || { echo "llmos serve --api printed no address"; cat "$tmp/err2"; exit 1; }
echo "llmos serve at $url"
LLMOS_URL="$url" LLMOS_TOOL_URL="$url2" LLMOS_ADMIN_KEY="$admin" LLMOS_CHROMIUM="$chromium" LLMOS_SCREENSHOTS="$shots" \
  NODE_EXTRA_CA_CERTS="$LLMOS_HOME/tls/localhost.crt" \
  node --test "$here"/web_ui.browser.mjs
rc=$?
kill -TERM "$pid2" "$fake" 2>/dev/null; wait "$pid2" "$fake" 2>/dev/null
kill -TERM "$pid"; wait "$pid"; src=$?
trap - EXIT; rm -rf "$tmp"
[ $rc -eq 0 ] || exit $rc
[ $src -eq 0 ] || { echo "llmos serve did not shut down cleanly on SIGTERM (status $src)"; exit 1; }
echo "screenshots in $shots"
exit 0
