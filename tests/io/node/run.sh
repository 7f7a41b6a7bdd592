#!/usr/bin/env bash
# run.sh - start `llmos serve` on stories260K and run the openai-client tests (node --test).
#
# Needs LLMOS_BIN (the llmos program) and LLMOS_TESTDATA (ctest sets both). Exits 77 (skip)
# with a message when node, the installed node_modules (scripts/deps installs them) or the
# test data are absent; nothing is downloaded here.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model="${LLMOS_TESTDATA:-}/models/stories260K.gguf"
if ! command -v node >/dev/null 2>&1; then echo "node is not installed (scripts/deps)"; exit 77; fi
if [ ! -d "$here/node_modules/openai" ]; then echo "$here/node_modules lacks openai (run scripts/deps)"; exit 77; fi
if [ ! -r "$model" ]; then echo "test data (models/stories260K.gguf) is absent"; exit 77; fi
if [ ! -x "${LLMOS_BIN:-}" ]; then echo "LLMOS_BIN is not the llmos program" >&2; exit 1; fi

tmp=$(mktemp -d /tmp/llmos-test-node-XXXXXX)
key="test-$RANDOM$RANDOM"
printf '%s\n' "$key" > "$tmp/key"
"$LLMOS_BIN" serve --model "$model" --port 0 --api-key-file "$tmp/key" -t 1 --no-store \
  >"$tmp/out" 2>"$tmp/err" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
url=
for _ in $(seq 100); do
  url=$(grep -o 'http://[^ ]*/v1' "$tmp/out" 2>/dev/null | head -1)
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then echo "llmos serve exited:"; cat "$tmp/err"; exit 1; fi
  sleep 0.1
done
[ -n "$url" ] || { echo "llmos serve printed no address"; cat "$tmp/err"; exit 1; }
echo "llmos serve at $url"
LLMOS_BASE_URL="$url" LLMOS_API_KEY="$key" LLMOS_MODEL=stories260K \
  node --test "$here"/*.test.mjs
rc=$?
kill -TERM "$pid"; wait "$pid"; src=$?
trap - EXIT; rm -rf "$tmp"
[ $rc -eq 0 ] || exit $rc
[ $src -eq 0 ] || { echo "llmos serve did not shut down cleanly on SIGTERM (status $src)"; exit 1; }
exit 0
