#!/bin/sh
# run_vdb.sh - generate the two vector datasets (once) and run bench/vdb on both: llmos's HNSW
# against hnswlib and exact search. Results (RESULT lines) go to stdout; see bench/README.md.
#
#   bench/run_vdb.sh [BUILD_DIR]        (default build; THREADS=2 REPS=3 override)
#
# Datasets (git-ignored, in bench/data/): 200k x 128-d clustered for L2 and 100k x 384-d
# normalised for inner product, 1000 queries each, exact top-100 ground truth.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${THREADS:-2}
REPS=${REPS:-3}
GEN=$BUILD/bench/gen_vectors
VDB=$BUILD/bench/vdb
if [ ! -x "$GEN" ] || [ ! -x "$VDB" ]; then
    echo "run_vdb.sh: build first (cmake --build $BUILD --target bench_vdb bench_gen_vectors)" >&2
    exit 2
fi
mkdir -p bench/data
D=bench/data
[ -f $D/clustered128_l2_gt.ivecs ] ||
    $GEN --kind l2 --n 200000 --nq 1000 --dim 128 --seed 1 --threads "$THREADS" --out $D/clustered128_l2
[ -f $D/normalized384_ip_gt.ivecs ] ||
    $GEN --kind ip --n 100000 --nq 1000 --dim 384 --seed 2 --threads "$THREADS" --out $D/normalized384_ip

echo "# load before: $(uptime)" >&2
$VDB --dataset clustered128_l2 --base $D/clustered128_l2_base.fvecs \
    --query $D/clustered128_l2_query.fvecs --gt $D/clustered128_l2_gt.ivecs --metric l2 \
    --threads "$THREADS" --reps "$REPS" --M 16 --efC 200 --ef 32,64,128 --method all
echo "# load between: $(uptime)" >&2
$VDB --dataset normalized384_ip --base $D/normalized384_ip_base.fvecs \
    --query $D/normalized384_ip_query.fvecs --gt $D/normalized384_ip_gt.ivecs --metric ip \
    --threads "$THREADS" --reps "$REPS" --M 16 --efC 200 --ef 32,64,128 --method all
echo "# load after: $(uptime)" >&2
