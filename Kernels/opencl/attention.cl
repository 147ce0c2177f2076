/*
 * attention: causal grouped-query attention of T queries over S keys          (Op.attention)
 *
 * Bindings: 0 query, 1 keys, 2 values, 3 queryPositions (int32), 4 keyPositions (int32; when parameter
 *           12 is -1 this is any buffer and key s has position s), 5 output (float)
 * Parameters: 0 T, 1 S, 2 heads, 3 kvHeads, 4 headDim (<= QTALE_MAX_HEAD_DIM), 5 queryOffset,
 *             6 queryStride, 7 keysOffset, 8 keysStride, 9 valuesOffset, 10 valuesStride,
 *             11 queryPositionsOffset, 12 keyPositionsOffset (-1: key s has position s),
 *             13 outputOffset, 14 outputStride
 * Work-groups: (heads, T, 1); one work-group per (head h, query t), reading key head h / (heads / kvHeads).
 *   Keys go in chunks of QTALE_WG with an online softmax (earlier chunks are rescaled by
 *   exp(old max - new max)):
 *   1. work-item i scores key chunk + i (16-wide dot products; -inf when invisible: key s is visible
 *      iff keyPosition[s] <= queryPositions[t]) into local memory;
 *   2. every work-item reads the chunk's maximum from local memory and turns its own score into a
 *      weight exp(score - running max);
 *   3. work-item (lane, block) accumulates output channels [16 block, 16 block + 16) over the chunk's
 *      keys lane, lane + lanes, ... into a 16-wide accumulator (lanes = QTALE_WG / blocks).
 *   At the end the lanes' partial sums meet in local memory and each work-item writes channels
 *   lid, lid + QTALE_WG, ... A query that sees no key writes zeros.
 *
 *   On CPU devices (QTALE_CPU_DEVICE = 1, set by the engine) work-item 0 of each group does the whole
 *   (head, query) alone and the others return at once: a work-group runs as a loop on one core, so
 *   splitting it only adds barriers and work-item context switches. It scores 16 keys at a time,
 *   takes their exponentials as one 16-wide vector and accumulates the values with 16-wide FMAs.
 * Must match Reference+Attention.swift attention (float64 there; float32 softmax here, NMSE bound 1e-10).
 */
#include "opencl/common.h"

#define QTALE_MAX_HEAD_DIM 256  /* OpenCLEngine.maxHeadDim */
#if QTALE_WG % 16 != 0
#error "attention reads chunk scores 16 at a time: QTALE_WG must be a multiple of 16"
#endif

inline float16 qtale_global16(const __global float *p, const int n) {
    if (n >= 16) return vload16(0, p);
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = i < n ? p[i] : 0.0f;
    return vload16(0, v);
}

inline float qtale_hsum16(const float16 v) {
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    const float2 c = b.lo + b.hi;
    return c.x + c.y;
}

inline float qtale_hmax16(const float16 v) {
    const float8 a = fmax(v.lo, v.hi);
    const float4 b = fmax(a.lo, a.hi);
    const float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

#if QTALE_CPU_DEVICE

#define QTALE_HEAD_BLOCKS (QTALE_MAX_HEAD_DIM / 16)

QTALE_KERNEL void attention(__global const float *query, __global const float *keys, __global const float *values,
                            __global const int *queryPositions, __global const int *keyPositions,
                            __global float *output, const KernelParameters params,
                            QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    if (get_local_id(0) != 0) return;
    const int S = QTALE_P(1), heads = QTALE_P(2), kvHeads = QTALE_P(3), headDim = QTALE_P(4);
    const int keyPositionsOffset = QTALE_P(12);
    const int h = (int)get_group_id(0);
    const size_t t = get_group_id(1);
    const int kvColumn = (h / (heads / kvHeads)) * headDim;
    const float scale = 1.0f / sqrt((float)headDim);
    const int limit = queryPositions[QTALE_P(11) + t];
    const __global float *q = query + QTALE_P(5) + t * (size_t)QTALE_P(6) + (size_t)h * headDim;
    const __global float *keyBase = keys + QTALE_P(7) + kvColumn;
    const __global float *valueBase = values + QTALE_P(9) + kvColumn;
    const int blocks = (headDim + 15) / 16;

    float16 qv[QTALE_HEAD_BLOCKS], acc[QTALE_HEAD_BLOCKS];
    #pragma unroll
    for (int b = 0; b < QTALE_HEAD_BLOCKS; b++) {
        if (b < blocks) qv[b] = qtale_global16(q + 16 * b, headDim - 16 * b);
        acc[b] = 0.0f;
    }
    float runningMax = -INFINITY, total = 0.0f;
    for (int chunk = 0; chunk < S; chunk += 16) {
        /* Scores of keys chunk .. chunk+15 (-inf: invisible or past S). */
        float score[16];
        for (int i = 0; i < 16; i++) {
            const int s = chunk + i;
            score[i] = -INFINITY;
            if (s < S && (keyPositionsOffset < 0 ? s : keyPositions[keyPositionsOffset + s]) <= limit) {
                const __global float *k = keyBase + (size_t)s * QTALE_P(8);
                float16 dot = 0.0f;
                #pragma unroll
                for (int b = 0; b < QTALE_HEAD_BLOCKS; b++) {
                    if (b < blocks) dot = fma(qv[b], qtale_global16(k + 16 * b, headDim - 16 * b), dot);
                }
                score[i] = qtale_hsum16(dot) * scale;
            }
        }
        const float16 scores = vload16(0, score);
        const float chunkMax = qtale_hmax16(scores);
        if (chunkMax == -INFINITY) continue;
        const float newMax = fmax(runningMax, chunkMax);
        const float rescale = exp(runningMax - newMax);  /* 0 while runningMax is -inf */
        float weight[16];
        vstore16(exp(scores - newMax), 0, weight);       /* exp(-inf) = 0 for invisible keys */
        runningMax = newMax;
        total *= rescale;
        #pragma unroll
        for (int b = 0; b < QTALE_HEAD_BLOCKS; b++) acc[b] *= rescale;
        for (int i = 0; i < 16; i++) {
            const float w = weight[i];
            if (w == 0.0f) continue;
            total += w;
            const __global float *v = valueBase + (size_t)(chunk + i) * QTALE_P(10);
            #pragma unroll
            for (int b = 0; b < QTALE_HEAD_BLOCKS; b++) {
                if (b < blocks) acc[b] = fma((float16)(w), qtale_global16(v + 16 * b, headDim - 16 * b), acc[b]);
            }
        }
    }
    __global float *out = output + QTALE_P(13) + t * (size_t)QTALE_P(14) + (size_t)h * headDim;
    const float inverse = runningMax == -INFINITY ? 0.0f : 1.0f / total;
    #pragma unroll
    for (int b = 0; b < QTALE_HEAD_BLOCKS; b++) {
        if (b < blocks) {
            float v[16];
            vstore16(acc[b] * inverse, 0, v);
            for (int d = 0; d < min(16, headDim - 16 * b); d++) out[16 * b + d] = v[d];
        }
    }
}

#else

QTALE_KERNEL void attention(__global const float *query, __global const float *keys, __global const float *values,
                            __global const int *queryPositions, __global const int *keyPositions,
                            __global float *output, const KernelParameters params,
                            QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int S = QTALE_P(1), heads = QTALE_P(2), kvHeads = QTALE_P(3), headDim = QTALE_P(4);
    const int keyPositionsOffset = QTALE_P(12);
    const int h = (int)get_group_id(0);
    const size_t t = get_group_id(1);
    const int lid = (int)get_local_id(0);
    const int kvColumn = (h / (heads / kvHeads)) * headDim;
    const float scale = 1.0f / sqrt((float)headDim);
    const int limit = queryPositions[QTALE_P(11) + t];
    const __global float *keyBase = keys + QTALE_P(7) + kvColumn;

    /* Output channel blocks of 16 and the key lanes that share each block. */
    const int blocks = (headDim + 15) / 16;
    const int lanes = QTALE_WG / blocks;
    const int block = lid % blocks, lane = lid / blocks;
    const bool accumulates = lane < lanes;
    const int channels = min(16, headDim - 16 * block);
    const __global float *valueBase = values + QTALE_P(9) + kvColumn + 16 * block;

    __local float q[QTALE_MAX_HEAD_DIM];
    __local float weights[QTALE_WG];
    __local float partial[QTALE_WG * 16];
    __local float partialTotal[QTALE_WG];
    const __global float *queryRow = query + QTALE_P(5) + t * (size_t)QTALE_P(6) + (size_t)h * headDim;
    for (int d = lid; d < headDim; d += QTALE_WG) q[d] = queryRow[d];
    barrier(CLK_LOCAL_MEM_FENCE);

    float runningMax = -INFINITY, total = 0.0f;
    float16 acc = 0.0f;
    for (int chunk = 0; chunk < S; chunk += QTALE_WG) {
        /* 1. Scores. */
        const int s = chunk + lid;
        float score = -INFINITY;
        if (s < S && (keyPositionsOffset < 0 ? s : keyPositions[keyPositionsOffset + s]) <= limit) {
            const __global float *k = keyBase + (size_t)s * QTALE_P(8);
            float16 dot16 = 0.0f;
            int d = 0;
            for (; d + 16 <= headDim; d += 16) dot16 = fma(vload16(0, q + d), vload16(0, k + d), dot16);
            float dot = qtale_hsum16(dot16);
            for (; d < headDim; d++) dot = fma(q[d], k[d], dot);
            score = dot * scale;
        }
        weights[lid] = score;
        barrier(CLK_LOCAL_MEM_FENCE);

        /* 2. Weights relative to the new running maximum. */
        float16 m = vload16(0, weights);
        #pragma unroll
        for (int i = 1; i < QTALE_WG / 16; i++) m = fmax(m, vload16(i, weights));
        const float newMax = fmax(runningMax, qtale_hmax16(m));
        const float rescale = runningMax == -INFINITY ? 0.0f : exp(runningMax - newMax);
        runningMax = newMax;
        barrier(CLK_LOCAL_MEM_FENCE);
        weights[lid] = score == -INFINITY ? 0.0f : exp(score - newMax);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* 3. Weighted values. */
        total *= rescale;
        acc *= rescale;
        if (accumulates) {
            const int count = min(QTALE_WG, S - chunk);
            for (int i = lane; i < count; i += lanes) {
                const float w = weights[i];
                if (w == 0.0f) continue;  /* invisible (or negligible) key: skip its values */
                total += w;
                acc = fma((float16)(w), qtale_global16(valueBase + (size_t)(chunk + i) * QTALE_P(10), channels), acc);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    /* Combine the lanes. */
    vstore16(accumulates ? acc : (float16)(0.0f), lid, partial);
    partialTotal[lid] = accumulates && block == 0 ? total : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    float sum = 0.0f;
    for (int i = 0; i < QTALE_WG; i++) sum += partialTotal[i];
    __global float *out = output + QTALE_P(13) + t * (size_t)QTALE_P(14) + (size_t)h * headDim;
    for (int d = lid; d < headDim; d += QTALE_WG) {
        /* Channel d lives in block d / 16, element d % 16, of every lane's accumulator. */
        float value = 0.0f;
        for (int l = 0; l < lanes; l++) value += partial[(l * blocks + d / 16) * 16 + d % 16];
        out[d] = runningMax == -INFINITY ? 0.0f : value / sum;
    }
}

#endif
