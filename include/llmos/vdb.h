/*
 * llmos/vdb.h - the vector index: HNSW approximate nearest-neighbour search over float vectors.
 *
 * This is llmos's "disk seek": archival memory stores an embedding per passage and finds the
 * passages nearest to a query embedding. The index is a Hierarchical Navigable Small World
 * graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
 * Hierarchical Navigable Small World graphs", 2016/2018): every vector is a node on layer 0 and,
 * with exponentially falling probability, on higher layers; a search descends greedily from the
 * top layer and ends with a best-first search of layer 0 bounded by `ef` candidates.
 *
 * Vectors are identified by caller-chosen 64-bit ids (a database row id, say). Small
 * collections (fewer than params.exact_below vectors) are searched exactly by brute force.
 * Hybrid retrieval merges the ranked lists of several retrievers (vectors, BM25 full-text
 * search) with reciprocal rank fusion, vdb_rrf_fuse.
 *
 * Threads: any number of readers (vdb_search, vdb_exact_search, vdb_count, vdb_save, ...) may
 * run at the same time as one writer (vdb_insert, vdb_delete, vdb_insert_batch); the index
 * serialises them with a reader-writer lock. vdb_insert_batch builds with several threads.
 *
 * Persistence: vdb_save writes a versioned binary image (format in docs/storage.md, "Vector
 * index"); vdb_load validates every field, so corrupt or hostile bytes give an error, never a
 * crash.
 */
#ifndef LLMOS_VDB_H
#define LLMOS_VDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How distance is measured. Smaller is nearer for every metric:
 *   VDB_L2      squared Euclidean distance, sum (a_i - b_i)^2
 *   VDB_IP      1 - dot(a, b)   (inner product; vectors are stored as given)
 *   VDB_COSINE  1 - cos(a, b)   (vectors and queries are normalised to unit length on entry) */
typedef enum vdb_metric { VDB_L2 = 0, VDB_IP = 1, VDB_COSINE = 2 } vdb_metric;

/* Build parameters. Get recommended values from vdb_params_default() and change what you
 * need; a zero M or ef_construction also means "default". */
typedef struct vdb_params {
    uint32_t M;               /* links per node on upper layers (layer 0 keeps 2*M); 2..256 */
    uint32_t ef_construction; /* candidate list size while inserting; larger = better graph */
    uint64_t seed;            /* seed of the level generator (same inserts -> same graph) */
    uint32_t exact_below;     /* vdb_search answers by brute force while count < this (0: never) */
    bool flat;                /* keep vectors only, no graph: every search is exact (a baseline,
                                 or a collection that stays small) */
} vdb_params;

/* M=16, ef_construction=200, seed=0x5eed, exact_below=1024, flat=false. */
LLMOS_API vdb_params vdb_params_default(void);

/* One search result: the caller's id and its distance to the query (see vdb_metric). */
typedef struct vdb_hit {
    uint64_t id;
    float distance;
} vdb_hit;

/* A predicate deciding whether id may appear in results (e.g. "belongs to this user"). It is
 * called from the searching thread, with the index's read lock held: it must not call back
 * into the same index's writers. */
typedef bool (*vdb_filter_fn)(uint64_t id, void *ctx);

typedef struct vdb vdb;

/* New empty index of `dim`-dimensional vectors (1..65536). `params` may be NULL for defaults.
 * Free with vdb_free. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_new(uint32_t dim, vdb_metric metric,
                                            const vdb_params *params, vdb **out);
/* Release the index and everything it holds. NULL is a no-op. No other thread may be using it. */
LLMOS_API void vdb_free(vdb *idx);

/* Make room for `n` vectors in total, so that a bulk load does not grow step by step. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_reserve(vdb *idx, size_t n);

/* Add vector `vec` (dim floats, copied) under `id`. LLMOS_ERR_EXISTS if id is present,
 * LLMOS_ERR_INVALID if the vector holds NaN or infinity (or is all zero under VDB_COSINE). */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_insert(vdb *idx, uint64_t id, const float *vec);

/* Add n vectors (row-major n x dim in `vecs`, ids in `ids`) using n_threads threads
 * (<= 0: pool_default_threads()). Threads insert concurrently with per-node locks, as hnswlib
 * does. On error some vectors may already be in; the first error is returned. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_insert_batch(vdb *idx, size_t n, const uint64_t *ids,
                                                     const float *vecs, int n_threads);

/* Remove `id`. Every node that linked to it is re-linked (its remaining neighbours plus the
 * removed node's neighbours, pruned with the HNSW heuristic) and the entry point moves if it
 * was the removed node, so search quality holds. Costs a scan of the link lists (O(n)).
 * LLMOS_ERR_NOT_FOUND if id is absent. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_delete(vdb *idx, uint64_t id);

/* The k nearest vectors to `query` (ascending distance) into hits[0..k), count in *n_hits
 * (fewer than k when the index, or the filter, allows fewer). `ef` is the layer-0 candidate list
 * size (raised to k if smaller; 0 means max(k, 64)): larger = higher recall, slower. `filter`
 * may be NULL; when it is given and the graph search finds fewer than k allowed vectors, the
 * search is completed by brute force so that a selective filter still gets every match. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_search(vdb *idx, const float *query, size_t k, size_t ef,
                                               vdb_filter_fn filter, void *ctx, vdb_hit *hits,
                                               size_t *n_hits);

/* Like vdb_search but exact: compares the query with every vector (the fallback for small
 * collections and the ground truth for recall measurements). */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_exact_search(vdb *idx, const float *query, size_t k,
                                                     vdb_filter_fn filter, void *ctx, vdb_hit *hits,
                                                     size_t *n_hits);

/* Number of vectors in the index. */
LLMOS_API size_t vdb_count(vdb *idx);
LLMOS_API uint32_t vdb_dim(const vdb *idx);
LLMOS_API vdb_metric vdb_get_metric(const vdb *idx);
/* True when id is in the index. */
LLMOS_API bool vdb_contains(vdb *idx, uint64_t id);
/* Copy the stored vector of id into out[0..dim) (normalised under VDB_COSINE). */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_get(vdb *idx, uint64_t id, float *out);

/* Serialise the index, appending to `out` (format: docs/storage.md, "Vector index"). */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_save(vdb *idx, llmos_buf *out);
/* Rebuild an index from bytes written by vdb_save. The bytes are untrusted: every length,
 * count, link and the trailing checksum are checked, and a mismatch is LLMOS_ERR_FORMAT (or
 * LLMOS_ERR_UNSUPPORTED for another format version) with the offset and field named. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_load(const void *bytes, size_t len, vdb **out);

/* ---- hybrid retrieval ------------------------------------------------------------------- */

/* One fused result: id and its reciprocal-rank-fusion score (higher is better). */
typedef struct vdb_fused {
    uint64_t id;
    double score;
} vdb_fused;

/* Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009): each id scores
 * sum over lists of 1 / (k + rank), rank counted from 1 in each list where it appears.
 * `lists[i]` holds lens[i] ids, best first (an id repeated in one list counts at its first
 * place). k = 0 means the customary 60. Writes the best min(max_out, distinct ids) results,
 * highest score first (ties: smaller id first), to out and their number to *n_out. */
LLMOS_API LLMOS_NODISCARD llmos_err vdb_rrf_fuse(const uint64_t *const *lists, const size_t *lens,
                                                 size_t n_lists, unsigned k, vdb_fused *out,
                                                 size_t max_out, size_t *n_out);

/* ---- distance kernels (exposed so tests can hold SIMD against scalar) -------------------- */

typedef enum vdb_simd { VDB_SIMD_SCALAR = 0, VDB_SIMD_AVX2 = 1, VDB_SIMD_AVX512 = 2 } vdb_simd;

/* Whether this CPU (and OS) can run the given kernel family. Scalar always can. */
LLMOS_API bool vdb_simd_available(vdb_simd simd);
/* The family vdb_new picks on this CPU (best available; LLMOS_VDB_SIMD=scalar|avx2|avx512
 * in the environment caps it). */
LLMOS_API vdb_simd vdb_simd_best(void);
/* Squared L2 distance and dot product of a[0..n) and b[0..n) with the given kernel family,
 * which must be available. */
LLMOS_API float vdb_l2sq_with(vdb_simd simd, const float *a, const float *b, size_t n);
LLMOS_API float vdb_dot_with(vdb_simd simd, const float *a, const float *b, size_t n);

#ifdef __cplusplus
}
#endif

#endif
