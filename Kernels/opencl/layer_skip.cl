/*
 * The ops gated layer skip adds: the router's dense linear layer and SiLU (Op.linear, Op.silu), the
 * row compaction around a block that only some tokens execute (Op.gatherRows, Op.scatterRows), and the
 * decision itself when the device makes it (Op.routerDecision).
 *
 * linear
 *   Bindings: 0 input [T x K], 1 weight [N x K] (float32), 2 bias [1 x N] (bound to input when absent), 3 output [T x N]
 *   Parameters: 0 T, 1 K, 2 N, 3 inputOffset, 4 inputStride, 5 weightOffset, 6 weightStride,
 *               7 biasOffset (-1: no bias), 8 outputOffset, 9 outputStride
 *   Work-groups: (ceil(N / QTALE_WG), T, 1); work-item (n, t) computes output[t][n] = weight[n] . input[t] + bias[n].
 * silu
 *   Bindings: 0 input, 1 output (may alias input)
 *   Parameters: 0 rows, 1 columns, 2 inputOffset, 3 inputStride, 4 outputOffset, 5 outputStride
 *   Work-groups: (ceil(columns / QTALE_WG), rows, 1).
 * move_rows (gather_rows and scatter_rows)
 *   Bindings: 0 source, 1 indices (int32), 2 output; 32-bit elements copied as bits
 *   Parameters: 0 M, 1 columns, 2 sourceOffset, 3 sourceStride, 4 indicesOffset, 5 outputOffset,
 *               6 outputStride, 7 direction (0: output[m] = source[indices[m]], 1: output[indices[m]] = source[m])
 *   Work-groups: (ceil(columns / QTALE_WG), M, 1).
 * router_decision
 *   Bindings: 0 logits [T x 2] (skip, execute), 1 decisions (int32 [1 x T])
 *   Parameters: 0 T, 1 logitsOffset, 2 logitsStride, 3 decisionsOffset, 4 margin (float: log(theta / (1 - theta)),
 *               +-inf at the ends; RouterDecisionRule.swift)
 *   Work-groups: (ceil(T / QTALE_WG), 1, 1); work-item t writes decisions[t] = execute - skip > margin.
 * Must match Reference+Matmul.swift (linear, NMSE 1e-11) and ReferenceEngine.encode (silu; rows and
 * decisions exactly).
 */
#include "opencl/common.h"

QTALE_KERNEL void linear(__global const float *input, __global const float *weight, __global const float *bias,
                         __global float *output, const KernelParameters params,
                         QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int n = (int)get_group_id(0) * QTALE_WG + (int)get_local_id(0);
    const size_t t = get_group_id(1);
    if (n >= QTALE_P(2)) return;
    const __global float *x = input + QTALE_P(3) + t * (size_t)QTALE_P(4);
    const __global float *w = weight + QTALE_P(5) + n * (size_t)QTALE_P(6);
    const int K = QTALE_P(1);
#if QTALE_CPU_DEVICE
    /* CPU devices (PoCL): a work-item runs its whole dot product 16 wide; vectorising across work-items
       instead, as PoCL does with the scalar loop, gathers the weights at a stride of K. */
    float16 acc = 0.0f;
    for (int k = 0; k < K; k += 16) acc = fma(qtale_load16(w, k, K), qtale_load16(x, k, K), acc);
    float sum = qtale_sum16(acc);
#else
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) sum = fma(w[k], x[k], sum);
#endif
    if (QTALE_P(7) >= 0) sum += bias[QTALE_P(7) + n];
    output[QTALE_P(8) + t * (size_t)QTALE_P(9) + n] = sum;
}

QTALE_KERNEL void silu(__global const float *input, __global float *output, const KernelParameters params,
                       QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int c = (int)get_group_id(0) * QTALE_WG + (int)get_local_id(0);
    const size_t r = get_group_id(1);
    if (c >= QTALE_P(1)) return;
    const float x = input[QTALE_P(2) + r * (size_t)QTALE_P(3) + c];
    output[QTALE_P(4) + r * (size_t)QTALE_P(5) + c] = x / (1.0f + exp(-x));
}

QTALE_KERNEL void move_rows(__global const uint *source, __global const int *indices, __global uint *output,
                            const KernelParameters params,
                            QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int c = (int)get_group_id(0) * QTALE_WG + (int)get_local_id(0);
    const int m = (int)get_group_id(1);
    if (c >= QTALE_P(1)) return;
    const int index = indices[QTALE_P(4) + m];
    const size_t from = QTALE_P(7) == 0 ? (size_t)index : (size_t)m;
    const size_t to = QTALE_P(7) == 0 ? (size_t)m : (size_t)index;
    output[QTALE_P(5) + to * (size_t)QTALE_P(6) + c] = source[QTALE_P(2) + from * (size_t)QTALE_P(3) + c];
}

QTALE_KERNEL void router_decision(__global const float *logits, __global int *decisions, const KernelParameters params,
                                  QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int t = (int)get_global_id(0);
    if (t >= QTALE_P(0)) return;
    const __global float *row = logits + QTALE_P(1) + t * (size_t)QTALE_P(2);
    decisions[QTALE_P(3) + t] = row[1] - row[0] > QTALE_PF(4) ? 1 : 0;
}
