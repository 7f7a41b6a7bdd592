#!/usr/bin/env bash
# bench/pull.sh - the app store's costs against their baselines on this machine:
#   pull       `llmos pull` of one SIZE_MIB file from a loopback registry (llmos registry
#              serve), SHA-256 checked while streaming and fsync'ed, against `cp` of the same
#              file to the same disk followed by `sync` of the copy (target: >= 80%);
#   verify     `llmos verify NAME` (signature, then SHA-256 of the file) against `sha256sum`
#              of the same file (target: the same speed).
# Each is run REPS times (best of); the source file is read once first so that both sides
# read it from the page cache. Prints one RESULT line per measure with MB/s and the ratio, and
# the CPU seconds of the pull's client and of cp (on a loaded machine the ratio follows them).
#
# usage: bench/pull.sh [BUILD_DIR]     SIZE_MIB=1024 REPS=3 by default
set -euo pipefail
BUILD=${1:-build}
LLMOS=$(cd "$BUILD" && pwd)/llmos
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/llmos-bench-pull.XXXXXX")
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export LLMOS_HOME="$WORK/home"

now() { date +%s.%N; }
best() { sort -g | head -1; }

head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/model.gguf"
cat "$WORK/model.gguf" >/dev/null
"$LLMOS" keys new "$WORK/bench" >/dev/null
"$LLMOS" publish "$WORK/registry" --key "$WORK/bench.key" --name bench --version 1.0.0 \
  --publisher bench "$WORK/model.gguf" >/dev/null
"$LLMOS" keys trust "$WORK/bench.pub" --publisher bench >/dev/null
"$LLMOS" registry serve "$WORK/registry" --port 0 >"$WORK/server.out" &
SERVER=$!
for _ in $(seq 50); do grep -q 'at http' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/.*at \(http[^ ]*\) .*/\1/p' "$WORK/server.out")

pull_s=() cp_s=() ver_s=() sum_s=() pull_cpu=() cp_cpu=()
cpu() { awk '{print $1 + $2}' "$WORK/cpu"; }  # user + system seconds of the last timed command
for _ in $(seq "$REPS"); do
  "$LLMOS" rm bench >/dev/null 2>&1 || true
  t0=$(now); /usr/bin/time -o "$WORK/cpu" -f '%U %S' "$LLMOS" pull bench --registry "$URL" >/dev/null 2>&1; t1=$(now)
  pull_s+=("$(echo "$t1 - $t0" | bc -l)"); pull_cpu+=("$(cpu)")
  rm -f "$WORK/copy"
  t0=$(now); /usr/bin/time -o "$WORK/cpu" -f '%U %S' sh -c 'cp "$1" "$2" && sync "$2"' sh "$WORK/model.gguf" "$WORK/copy"; t1=$(now)
  cp_s+=("$(echo "$t1 - $t0" | bc -l)"); cp_cpu+=("$(cpu)")
  t0=$(now); "$LLMOS" verify bench >/dev/null; t1=$(now)
  ver_s+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now); sha256sum "$WORK/copy" >/dev/null; t1=$(now)
  sum_s+=("$(echo "$t1 - $t0" | bc -l)")
done
p=$(printf '%s\n' "${pull_s[@]}" | best); c=$(printf '%s\n' "${cp_s[@]}" | best)
v=$(printf '%s\n' "${ver_s[@]}" | best); s=$(printf '%s\n' "${sum_s[@]}" | best)
pc=$(printf '%s\n' "${pull_cpu[@]}" | best); cc=$(printf '%s\n' "${cp_cpu[@]}" | best)
mb=$(echo "$SIZE_MIB * 1.048576" | bc -l)
printf 'RESULT pull    %d MiB  llmos pull %.0f MB/s (%.2f s)  cp+sync %.0f MB/s (%.2f s)  ratio %.2f\n' \
  "$SIZE_MIB" "$(echo "$mb / $p" | bc -l)" "$p" "$(echo "$mb / $c" | bc -l)" "$c" "$(echo "$c / $p" | bc -l)"
printf 'RESULT cpu     %d MiB  llmos pull %.2f CPU-s (the client; the server is another process)  cp+sync %.2f CPU-s\n' \
  "$SIZE_MIB" "$pc" "$cc"
printf 'RESULT verify  %d MiB  llmos verify %.0f MB/s (%.2f s/GiB)  sha256sum %.0f MB/s (%.2f s/GiB)  ratio %.2f\n' \
  "$SIZE_MIB" "$(echo "$mb / $v" | bc -l)" "$(echo "$v * 1024 / $SIZE_MIB" | bc -l)" \
  "$(echo "$mb / $s" | bc -l)" "$(echo "$s * 1024 / $SIZE_MIB" | bc -l)" "$(echo "$s / $v" | bc -l)"
