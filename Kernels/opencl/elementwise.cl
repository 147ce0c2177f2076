/*
 * Elementwise ops over [rows x columns] views: swiglu, add (Op.swiGLU, Op.add) and copy (Op.copy).
 *
 * swiglu, add
 *   Bindings: 0 a (gate), 1 b (up), 2 output (float; output may be a: in place)
 *   Parameters: 0 rows, 1 columns, 2 aOffset, 3 aStride, 4 bOffset, 5 bStride, 6 outputOffset, 7 outputStride
 *   swiglu: output = a / (1 + exp(-a)) * b;  add: output = a + b
 * copy
 *   Bindings: 0 source, 1 destination (32-bit elements: float32 or int32 alike, copied as bits)
 *   Parameters: 0 rows, 1 columns, 2 sourceOffset, 3 sourceStride, 4 destinationOffset, 5 destinationStride
 * Work-groups: (any, rows, 1): work-item x of work-group (g, r) handles elements (r, c) with
 *   c = g QTALE_WG + x, c + G QTALE_WG, ... for G work-groups across. The planner asks
 *   ceil(columns / QTALE_WG) (one element each); on CPU devices the engine launches one per row.
 * Must match Reference+Elementwise.swift and ReferenceEngine.encode (add exactly; swiglu NMSE 1e-12).
 */
#include "opencl/common.h"

/* The columns of this work-item (parameter 1 is the column count; see Work-groups above). */
#define QTALE_FOR_COLUMNS(c)                                                                              \
    for (int c = (int)get_group_id(0) * QTALE_WG + (int)get_local_id(0); c < QTALE_P(1);                 \
         c += QTALE_WG * (int)get_num_groups(0))

QTALE_KERNEL void swiglu(__global const float *gate, __global const float *up, __global float *output,
                         const KernelParameters params,
                         QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const size_t r = get_group_id(1);
    QTALE_FOR_COLUMNS(c) {
        const float g = gate[QTALE_P(2) + r * (size_t)QTALE_P(3) + c];
        const float u = up[QTALE_P(4) + r * (size_t)QTALE_P(5) + c];
        output[QTALE_P(6) + r * (size_t)QTALE_P(7) + c] = g / (1.0f + exp(-g)) * u;
    }
}

QTALE_KERNEL void add(__global const float *a, __global const float *b, __global float *output,
                      const KernelParameters params,
                      QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const size_t r = get_group_id(1);
    QTALE_FOR_COLUMNS(c) {
        output[QTALE_P(6) + r * (size_t)QTALE_P(7) + c] =
            a[QTALE_P(2) + r * (size_t)QTALE_P(3) + c] + b[QTALE_P(4) + r * (size_t)QTALE_P(5) + c];
    }
}

QTALE_KERNEL void copy(__global const uint *source, __global uint *destination, const KernelParameters params,
                       QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const size_t r = get_group_id(1);
    QTALE_FOR_COLUMNS(c) {
        destination[QTALE_P(4) + r * (size_t)QTALE_P(5) + c] = source[QTALE_P(2) + r * (size_t)QTALE_P(3) + c];
    }
}
