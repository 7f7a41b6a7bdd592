#!/usr/bin/env bash
# scripts/check_llamacpp.sh - do llmos and llama.cpp read llmos's GGUF files the same way?
#
# For each architecture, `llmos model make-random` writes a small F32 file (random weights, a
# real vocabulary from the shared test data); llama.cpp's llama-simple and `llmos generate`
# then continue the same prompt greedily for 16 tokens, and the two texts must be equal. The
# files follow the layout llama.cpp expects (tensor names, metadata keys): a file it cannot
# load, or different tokens, is a failure. An architecture the given llama.cpp build does not
# know is reported and skipped.
#
# usage: scripts/check_llamacpp.sh LLAMA_CPP_BIN_DIR [BUILD_DIR]
set -euo pipefail
ref=${1:?usage: scripts/check_llamacpp.sh LLAMA_CPP_BIN_DIR [BUILD_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
llmos=${2:-$root/build}/llmos
vocab=${LLMOS_TESTDATA:-$root/../shared/testdata}/vocab
tmp=$(mktemp -d /tmp/llmos-check-llamacpp-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prompt="Once upon a time"
fails=0
# arch, dims (gemma2: 26 layers, a size llama.cpp's gemma2 graph knows), vocabulary
while read -r arch dims voc; do
  f=$tmp/$arch.gguf
  "$llmos" model make-random --arch "$arch" --dims "$dims" --vocab-from "$vocab/$voc" \
    --type f32 --seed 7 "$f" >/dev/null 2>&1
  ours=$("$llmos" generate --model "$f" -p "$prompt" -n 16 --temp 0 -t 2 2>/dev/null)
  theirs=$("$ref/llama-simple" -m "$f" -n 16 "$prompt" 2>"$tmp/err" | sed -e "s/^<s> //" \
    -e "s/^$prompt//") || true
  if grep -q "unknown model architecture" "$tmp/err"; then
    echo "skip  $arch: this llama.cpp does not know the architecture"
  elif [ -n "$theirs" ] && [ "$ours" = "$theirs" ]; then
    echo "same  $arch: $ours"
  else
    echo "DIFF  $arch: llmos '$ours', llama.cpp '$theirs' ($(grep -m1 -i error "$tmp/err" || true))"
    fails=$((fails + 1))
  fi
done <<'LIST'
llama 256,2,4,2,512,512 ggml-vocab-llama-spm.gguf
qwen2 256,2,4,2,512,512 ggml-vocab-qwen2.gguf
qwen3 256,2,4,2,512,512 ggml-vocab-qwen2.gguf
gemma2 256,26,4,2,512,512 ggml-vocab-llama-spm.gguf
gemma3 256,2,4,1,512,512 ggml-vocab-llama-spm.gguf
phi3 256,2,4,4,512,512 ggml-vocab-phi-3.gguf
LIST
exit $((fails > 0))
