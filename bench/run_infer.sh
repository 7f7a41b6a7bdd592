#!/bin/sh
# bench/run_infer.sh - the inference speed table: random-weight models of TinyLlama-1.1B and
# Qwen2.5-0.5B shapes, quantized to Q4_0, Q8_0, Q4_K_M and Q5_K_M, measured with `llmos bench`
# (pp128, tg64) and bench/roofline (bandwidth ceiling for generation), next to llama.cpp's
# figures for the same shapes and types measured on the reference 2-core machine.
#
# Models are made when missing, under bench/data/ (ignored by git; about 6 GB in all).
#
#   BUILD=build-perf THREADS=2 REPS=3 sh bench/run_infer.sh
#
# Environment: BUILD (build directory, default build), THREADS (default 2), REPS (default 3),
# LLMOS_TESTDATA (the shared test data, for the vocabularies; default ../shared/testdata),
# SHAPES (default "tinyllama qwen"; also qwen3, llama32, gemma2, gemma3, phi3: the random
# Qwen3-0.6B, Llama-3.2-1B, Gemma-2-2B, Gemma-3-1B and Phi-3-mini shapes), TYPES (default "Q4_0 Q8_0 Q4_K_M Q5_K_M"; llama.cpp figures
# exist for the first three), PP and TG (prompt and
# generation lengths, default 128 and 64: the reference figures are for those).
set -eu

BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
REPS=${REPS:-3}
PP=${PP:-128}
TG=${TG:-64}
SHAPES=${SHAPES:-"tinyllama qwen"}
TYPES=${TYPES:-"Q4_0 Q8_0 Q4_K_M Q5_K_M"}
TESTDATA=${LLMOS_TESTDATA:-../shared/testdata}
LLMOS=$BUILD/llmos
ROOFLINE=$BUILD/bench/roofline
DATA=bench/data
OUT=$DATA/infer-$(date -u +%Y%m%dT%H%M%SZ).txt

[ -x "$LLMOS" ] && [ -x "$ROOFLINE" ] || {
    echo "run_infer.sh: build first ($LLMOS and $ROOFLINE are missing): cmake --build $BUILD" >&2
    exit 2
}
mkdir -p "$DATA"

# llama.cpp's figures (tokens/s, 2 threads) for the reference machine: pp128 and tg64.
ref() {
    case "$1-$2" in
    tinyllama-Q4_0) echo "221 41.7" ;;
    tinyllama-Q8_0) echo "232 23.8" ;;
    tinyllama-Q4_K_M) echo "218 24.5" ;;
    qwen-Q4_0) echo "756 71.0" ;;
    qwen-Q8_0) echo "767 48.4" ;;
    qwen-Q4_K_M) echo "238 33.0" ;;
    *) echo "- -" ;;
    esac
}

make_base() { # shape -> path of the F16 model, made when missing
    case "$1" in
    tinyllama) shape=tinyllama-1.1b vocab=ggml-vocab-llama-spm.gguf ;;
    qwen) shape=qwen2.5-0.5b vocab=ggml-vocab-qwen2.gguf ;;
    qwen3) shape=qwen3-0.6b vocab=ggml-vocab-qwen2.gguf ;;
    llama32) shape=llama3.2-1b vocab=ggml-vocab-llama-bpe.gguf ;;
    phi3) shape=phi3-mini vocab=ggml-vocab-phi-3.gguf ;;
    # no Gemma vocabulary in the test data: the Llama 2 one, in the shape's 256k/262k-row
    # embedding (the matrices, and so the speed, are the real model's)
    gemma2) shape=gemma2-2b vocab=ggml-vocab-llama-spm.gguf ;;
    gemma3) shape=gemma3-1b vocab=ggml-vocab-llama-spm.gguf ;;
    *) echo "run_infer.sh: unknown shape $1" >&2; exit 2 ;;
    esac
    base=$DATA/$shape-f16.gguf
    if [ ! -f "$base" ]; then
        "$LLMOS" model make-random --shape "$shape" --vocab-from "$TESTDATA/vocab/$vocab" \
            --type f16 "$base" >&2
    fi
    echo "$base"
}

json_field() { # line key -> value
    printf '%s\n' "$1" | sed -n "s/.*\"$2\": *\([^,}]*\).*/\1/p"
}

{
    echo "# llmos inference table, $(date -u), threads $THREADS, reps $REPS"
    echo "# $("$LLMOS" version 2>/dev/null | head -n 1)"
} | tee "$OUT"
printf '%-10s %-7s %9s %9s %14s %9s %14s %9s %9s %7s  %s\n' shape type size_MB ceiling \
    pp$PP ref_pp128 tg$TG ref_tg64 ref/ceil ceil% load | tee -a "$OUT"
for s in $SHAPES; do
    base=$(make_base "$s")
    for t in $TYPES; do
        model=$DATA/$(basename "$base" -f16.gguf)-$(echo "$t" | tr 'A-Z' 'a-z').gguf
        [ -f "$model" ] || "$LLMOS" model quantize -t "$THREADS" "$base" "$model" "$t" 2>/dev/null
        load=$(uptime | sed 's/.*load average: *//; s/,.*//')
        lines=$("$LLMOS" bench --model "$model" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" --json)
        pp=$(printf '%s\n' "$lines" | grep "\"pp$PP\"")
        tg=$(printf '%s\n' "$lines" | grep "\"tg$TG\"")
        roof=$("$ROOFLINE" --model "$model" -t "$THREADS" -n "$TG" -r "$REPS")
        echo "$roof" >>"$OUT"
        ceiling=$(printf '%s\n' "$roof" | sed -n 's/^ceiling *\([0-9.]*\).*/\1/p')
        frac=$(printf '%s\n' "$roof" | sed -n 's/^fraction *\([0-9.]*\)%.*/\1/p')
        size=$(($(wc -c <"$model") / 1000000))
        set -- $(ref "$s" "$t")
        rpp=$1 rtg=$2
        rc=$(awk -v a="$rtg" -v c="$ceiling" 'BEGIN { if (a == "-") print "-"; else printf "%.0f%%", 100 * a / c }')
        printf '%-10s %-7s %9s %9s %7.1f±%-6.1f %9s %7.1f±%-6.1f %9s %9s %7s  %s\n' "$s" "$t" \
            "$size" "$ceiling" "$(json_field "$pp" tokens_per_s)" \
            "$(json_field "$pp" tokens_per_s_sd)" "$rpp" "$(json_field "$tg" tokens_per_s)" \
            "$(json_field "$tg" tokens_per_s_sd)" "$rtg" "$rc" "$frac" "$load" | tee -a "$OUT"
    done
done
echo "# written to $OUT" >&2
