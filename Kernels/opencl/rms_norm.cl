/*
 * rms_norm: output[t] = input[t] / sqrt(mean(input[t]^2) + epsilon) * weight      (Op.rmsNorm)
 *
 * Bindings: 0 input, 1 weight, 2 output (float; output may be input: in place)
 * Parameters: 0 columns, 1 inputOffset, 2 inputStride, 3 weightOffset, 4 outputOffset, 5 outputStride,
 *             6 epsilon (float bits)
 * Work-groups: (rows, 1, 1); one work-group per row: each work-item sums the squares of columns
 * lid, lid + QTALE_WG, ..., a tree reduction in local memory adds the partial sums, then each
 * work-item scales its columns. Every read of the row happens before the reduction's barriers, so
 * in-place use is safe.
 * Must match Reference+Normalization.swift rmsNorm (float64 there; float32 here, NMSE bound 1e-11).
 */
#include "opencl/common.h"

QTALE_KERNEL void rms_norm(__global const float *input, __global const float *weight, __global float *output,
                           const KernelParameters params,
                           QTALE_PREDICATE_ARGUMENTS) {
    /* A clear predicate empties the row rather than returning: every work-item must reach the barriers
       (common.h). */
    const int columns = QTALE_PREDICATE_HOLDS ? QTALE_P(0) : 0;
    const int lid = (int)get_local_id(0);
    const size_t row = get_group_id(0);
    const __global float *x = input + QTALE_P(1) + row * (size_t)QTALE_P(2);
    const __global float *w = weight + QTALE_P(3);
    __global float *y = output + QTALE_P(4) + row * (size_t)QTALE_P(5);

    __local float partial[QTALE_WG];
    float sum = 0.0f;
    for (int c = lid; c < columns; c += QTALE_WG) sum = fma(x[c], x[c], sum);
    partial[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = QTALE_WG / 2; stride > 0; stride >>= 1) {
        if (lid < stride) partial[lid] += partial[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float inverse = 1.0f / sqrt(partial[0] / (float)columns + QTALE_PF(6));
    for (int c = lid; c < columns; c += QTALE_WG) y[c] = x[c] * inverse * w[c];
}
