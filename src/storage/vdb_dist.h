/*
 * vdb_dist.h - distance kernels of the vector index, private to src/storage/vdb*.c.
 *
 * The public face (vdb_l2sq_with, vdb_dot_with, vdb_simd_best) is in llmos/vdb.h; this header
 * hands the index the function pointers of one kernel family so that the hot loop makes one
 * indirect call per distance.
 */
#ifndef LLMOS_STORAGE_VDB_DIST_H
#define LLMOS_STORAGE_VDB_DIST_H

#include <stddef.h>

#include "llmos/vdb.h"

typedef float (*vdb_kernel_fn)(const float *a, const float *b, size_t n);

typedef struct vdb_kernels {
    vdb_kernel_fn l2sq; /* sum (a_i - b_i)^2 */
    vdb_kernel_fn dot;  /* sum a_i * b_i */
} vdb_kernels;

/* The kernels of family `simd` (which must be available; scalar otherwise). */
vdb_kernels vdb_kernels_for(vdb_simd simd);

#endif
