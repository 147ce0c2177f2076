/*
 * matmul: output[t][n] = sum_k input[t][k] * dequantize(weight)[n][k]      (Op.matmul)
 *         (output[t][n] += that sum when accumulate is 1)
 *
 * Bindings: 0 input (float), 1 codes (uchar), 2 scales (binary16), 3 offsets (binary16), 4 output (float);
 *           matmul_vec on CPU devices takes one more argument after the predicate's, rowBlocks (below).
 * Parameters: 0 bits, 1 groupSize, 2 K, 3 N, 4 codeBytesPerRow, 5 groupsPerRow, 6 T,
 *             7 inputOffset, 8 inputStride, 9 outputOffset, 10 outputStride, 11 accumulate,
 *             12 firstRow (the weight buffers' row that is row 0 of the matrix)
 *
 * matmul_vec (T = 1, decode). Work-groups: (ceil(N / QTALE_MATVEC_ROWS), 1, 1) (on CPU devices, below,
 *   one per compute unit). Each work-group
 *   computes QTALE_MATVEC_ROWS rows. First the work-group sums x over each quantization group into
 *   local memory (sx[g], shared by all its rows), then QTALE_MATVEC_LANES work-items per row split K
 *   by packs (lane j takes packs j, j + lanes, ..., each a contiguous 32-code stream) and compute
 *     row . x = sum_g scale_g * (sum_{k in g} code_k x_k) + sum_g offset_g * sx[g]
 *   with 16-wide vectors (the offset term 16 groups at a time, by lane 0); with several lanes, a
 *   local-memory reduction adds the lanes' partial sums. Rows with more than QTALE_MAX_GROUPS groups
 *   (K > 65536 at group 32) dequantize instead: sum_k (scale code_k + offset) x_k.
 *   QTALE_MATVEC_LANES is QTALE_WG / QTALE_MATVEC_ROWS (every work-item busy).
 *   On CPU devices (QTALE_CPU_DEVICE) a work-group runs as a loop over its work-items on one core.
 *   There the engine launches one work-group per compute unit (PoCL worker thread) and passes two
 *   int32 counters, rowBlocks: work-item 0 of each work-group takes blocks of QTALE_ROW_BLOCK rows
 *   from rowBlocks[0] until none is left, and the last work-group out resets both counters (the next
 *   launch starts after it, in the in-order queue). Blocks in place of a work-group per 64 rows,
 *   because PoCL 3.1 hands the work-groups of a launch to its threads in halves and wakes the idle
 *   thread for each launch: the thread that arrives late now takes fewer blocks instead of being waited
 *   for (decode 102 -> 121 tokens/s, medians of eight interleaved runs). Blocks of 256 rows keep each
 *   thread's reads contiguous for the hardware prefetcher: 16-row blocks interleaved the two threads'
 *   streams and were slower in decode than before (82 against 95); 128 gave 116, 512 gave 112.
 *   With any number of threads, one included, every block is taken exactly once.
 *   No barrier: only work-item 0 works. 4-bit rows (K <= QTALE_SPLIT_MAX_K, where the compiler is
 *   clang) dot the codes with x split into two int16 terms, which it writes once into local memory
 *   (qtale_row_dot_split, below). Other rows sum each group's inputs on the way,
 *     row . x = sum_g scale_g * (sum_{k in g} code_k x_k) + offset_g * (sum_{k in g} x_k)
 *   (qtale_row_dot_cpu). Two rows at a time, sharing the input loads, were tried on both paths and
 *   ran no faster in decode.
 * matmul_mat (T > 1, prefill). Work-groups: (ceil(N / QTALE_TILE_ROWS), ceil(T / QTALE_TILE_TOKENS), 1).
 *   A tile of QTALE_TILE_ROWS (= QTALE_WG) rows x QTALE_TILE_TOKENS tokens: work-item i owns row
 *   tile.x * QTALE_TILE_ROWS + i, dequantizes each of its packs once and dots it with every token.
 *
 * Weights are w = scale * code + offset (quant_layout.h); codes past K are zero and the inputs past K
 * are read as zero, so tails need no special case beyond the masked input load.
 * Must match Reference+Matmul.swift matmul (float64 there; float32 accumulation here, NMSE bound 1e-10).
 */
#include "quant_layout.h"
#include "opencl/common.h"

#ifndef QTALE_MATVEC_LANES
#define QTALE_MATVEC_LANES (QTALE_WG / QTALE_MATVEC_ROWS)
#endif
#ifndef QTALE_MAX_GROUPS
#define QTALE_MAX_GROUPS 2048
#endif
#if QTALE_MATVEC_LANES * QTALE_MATVEC_ROWS > QTALE_WG
#error "QTALE_MATVEC_LANES * QTALE_MATVEC_ROWS must not exceed QTALE_WG"
#endif

#if QTALE_WG % QTALE_MATVEC_ROWS != 0
#error "QTALE_WG must be a multiple of QTALE_MATVEC_ROWS"
#endif
#if QTALE_TILE_ROWS != QTALE_WG
#error "matmul_mat assigns one tile row per work-item: QTALE_TILE_ROWS must equal QTALE_WG"
#endif

/* *o = value, or *o += value when `accumulate` (parameter 11) is set. */
QTALE_INLINE void qtale_store_output(__global float *o, const float value, const int accumulate) {
    *o = accumulate ? *o + value : value;
}

/* The 32 codes of a pack as floats: lo = codes 0..15, hi = codes 16..31. `bits` is a literal at every
   call site, so each format gets its own straight-line unpack after inlining. */
QTALE_INLINE void qtale_unpack(const __global uchar *pack, const int bits, float16 *lo, float16 *hi) {
    if (bits == 8) {
        *lo = convert_float16(vload16(0, pack));
        *hi = convert_float16(vload16(1, pack));
    } else if (bits == 4) {
        const uchar16 b = vload16(0, pack);
        *lo = convert_float16(b & (uchar16)(15));
        *hi = convert_float16(b >> (uchar16)(4));
    } else {
        const uint8 b = convert_uint8(vload8(0, pack));
        const uint8 u = (uint8)((uint)pack[8] | (uint)pack[9] << 8 | (uint)pack[10] << 16 | (uint)pack[11] << 24);
        const uint8 lane = (uint8)(0, 1, 2, 3, 4, 5, 6, 7);
        const float8 c0 = convert_float8((b & 3u) | ((u >> lane) & 1u) << 2);
        const float8 c1 = convert_float8(((b >> 2) & 3u) | ((u >> (lane + 8u)) & 1u) << 2);
        const float8 c2 = convert_float8(((b >> 4) & 3u) | ((u >> (lane + 16u)) & 1u) << 2);
        const float8 c3 = convert_float8(((b >> 6) & 3u) | ((u >> (lane + 24u)) & 1u) << 2);
        *lo = (float16)(c0, c1);
        *hi = (float16)(c2, c3);
    }
}

/* Scales and offsets of groups g0 .. g0+15 of a row, as floats in s[] and o[] (values past `groups`
   are unused): one 16-wide conversion per 16 groups (vload_half16 is F16C's vcvtph2ps on PoCL, where
   the scalar vload_half is a library routine). `readable` counts the halves from scales + g0 (and
   offsets + g0) to the end of the matrix: while it is at least 16 the block is loaded whole even past
   the row's end. */
QTALE_INLINE void qtale_group_block(const __global half *scales, const __global half *offsets, const int g0,
                                    const int groups, const int readable, float *s, float *o) {
    if (g0 + 16 <= groups || readable >= 16) {
        vstore16(vload_half16(0, scales + g0), 0, s);
        vstore16(vload_half16(0, offsets + g0), 0, o);
    } else {
        for (int i = 0; i < 16; i++) {
            s[i] = g0 + i < groups ? vload_half(g0 + i, scales) : 0.0f;
            o[i] = g0 + i < groups ? vload_half(g0 + i, offsets) : 0.0f;
        }
    }
}

/* x[32p .. 32p+32) as two halves, read as zero past K. */
QTALE_INLINE void qtale_pack_inputs(const __global float *x, const int p, const int fullPacks, const int K,
                                    float16 *low, float16 *high) {
    if (p < fullPacks) {
        *low = vload16(0, x + p * 32);
        *high = vload16(0, x + p * 32 + 16);
    } else {
        *low = qtale_load16(x, p * 32, K);
        *high = qtale_load16(x, p * 32 + 16, K);
    }
}

/* acc += dequantize(pack p) . x[32p .. 32p+32), reading x as zero past K. */
#define QTALE_PACK_DOT(p, scale, offset, accLow, accHigh)                                                  \
    do {                                                                                               \
        float16 low_, high_, xLow_, xHigh_;                                                            \
        qtale_unpack(codes + (p) * QTALE_PACK_BYTES(bits), bits, &low_, &high_);                      \
        qtale_pack_inputs(x, (p), fullPacks, K, &xLow_, &xHigh_);                                      \
        accLow = fma(fma(low_, scale, offset), xLow_, accLow);                                         \
        accHigh = fma(fma(high_, scale, offset), xHigh_, accHigh);                                     \
    } while (0)

/* This lane's share of one row's dot product with x, dequantizing: packs p = lane (mod QTALE_MATVEC_LANES). */
QTALE_INLINE float qtale_row_dot(const __global float *x, const __global uchar *codes, const __global half *scales,
                                 const __global half *offsets, const int K, const int groupSize, const int groups,
                                 const int rowsLeft, const int lane, const int bits) {
    const int packs = (K + QTALE_CODES_PER_PACK - 1) >> 5;
    const int fullPacks = K >> 5;
    const int packsPerGroup = groupSize >> 5;
    float16 acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
    float s[16], o[16];
    for (int g0 = 0; g0 < groups; g0 += 16) {
        qtale_group_block(scales, offsets, g0, groups, rowsLeft * groups - g0, s, o);
        const int blockGroups = min(16, groups - g0);
        if (packsPerGroup == 1) {
            /* One pack per group (GGUF's formats): a flat loop, two packs per step. */
            int gi = lane;
            for (; gi + QTALE_MATVEC_LANES < blockGroups; gi += 2 * QTALE_MATVEC_LANES) {
                QTALE_PACK_DOT(g0 + gi, (float16)(s[gi]), (float16)(o[gi]), acc0, acc1);
                const int gj = gi + QTALE_MATVEC_LANES;
                QTALE_PACK_DOT(g0 + gj, (float16)(s[gj]), (float16)(o[gj]), acc2, acc3);
            }
            if (gi < blockGroups) QTALE_PACK_DOT(g0 + gi, (float16)(s[gi]), (float16)(o[gi]), acc0, acc1);
            continue;
        }
        for (int gi = 0; gi < blockGroups; gi++) {
            const int first = (g0 + gi) * packsPerGroup, end = min(packs, first + packsPerGroup);
            const float16 scale = (float16)(s[gi]), offset = (float16)(o[gi]);
            int p = first + (lane - first % QTALE_MATVEC_LANES + QTALE_MATVEC_LANES) % QTALE_MATVEC_LANES;
            for (; p + QTALE_MATVEC_LANES < end; p += 2 * QTALE_MATVEC_LANES) {
                QTALE_PACK_DOT(p, scale, offset, acc0, acc1);
                QTALE_PACK_DOT(p + QTALE_MATVEC_LANES, scale, offset, acc2, acc3);
            }
            if (p < end) QTALE_PACK_DOT(p, scale, offset, acc0, acc1);
        }
    }
    return qtale_sum16((acc0 + acc1) + (acc2 + acc3));
}

/* Sum_k code_k x_k over pack p (x read as zero past K). */
#define QTALE_PACK_CODE_DOT(p, d)                                                                         \
    do {                                                                                               \
        float16 low_, high_, xLow_, xHigh_;                                                            \
        qtale_unpack(codes + (p) * QTALE_PACK_BYTES(bits), bits, &low_, &high_);                      \
        qtale_pack_inputs(x, (p), fullPacks, K, &xLow_, &xHigh_);                                      \
        d = fma(high_, xHigh_, low_ * xLow_);                                                          \
    } while (0)

/* This lane's share of one row's dot product with x from the group sums sx[] of x:
   scale_g * sum code.x per group (packs p = lane mod QTALE_MATVEC_LANES), and on lane 0 the offset term
   sum_g offset_g sx[g]. */
QTALE_INLINE float qtale_row_dot_sums(const __global float *x, const __global uchar *codes, const __global half *scales,
                                      const __global half *offsets, const __local float *sx, const int K,
                                      const int groupSize, const int groups, const int rowsLeft, const int lane,
                                      const int bits) {
    const int packs = (K + QTALE_CODES_PER_PACK - 1) >> 5;
    const int fullPacks = K >> 5;
    const int packsPerGroup = groupSize >> 5;
    const int16 ids = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    float16 acc0 = 0.0f, acc1 = 0.0f, accOffsets = 0.0f;
    float s[16], o[16];
    for (int g0 = 0; g0 < groups; g0 += 16) {
        qtale_group_block(scales, offsets, g0, groups, rowsLeft * groups - g0, s, o);
        const int blockGroups = min(16, groups - g0);
        if (lane == 0) {
            const int16 inside = ids < blockGroups;  /* sx and o past `groups` are not data */
            accOffsets = fma(select((float16)(0.0f), vload16(0, o), inside),
                             select((float16)(0.0f), vload16(0, sx + g0), inside), accOffsets);
        }
        if (packsPerGroup == 1) {
            /* One pack per group (GGUF's formats): a flat loop, two packs per step. */
            int gi = lane;
            for (; gi + QTALE_MATVEC_LANES < blockGroups; gi += 2 * QTALE_MATVEC_LANES) {
                float16 d0, d1;
                QTALE_PACK_CODE_DOT(g0 + gi, d0);
                QTALE_PACK_CODE_DOT(g0 + gi + QTALE_MATVEC_LANES, d1);
                acc0 = fma((float16)(s[gi]), d0, acc0);
                acc1 = fma((float16)(s[gi + QTALE_MATVEC_LANES]), d1, acc1);
            }
            if (gi < blockGroups) {
                float16 d0;
                QTALE_PACK_CODE_DOT(g0 + gi, d0);
                acc0 = fma((float16)(s[gi]), d0, acc0);
            }
            continue;
        }
        for (int gi = 0; gi < blockGroups; gi++) {
            const int first = (g0 + gi) * packsPerGroup, end = min(packs, first + packsPerGroup);
            float16 d = 0.0f;
            for (int p = first + (lane - first % QTALE_MATVEC_LANES + QTALE_MATVEC_LANES) % QTALE_MATVEC_LANES;
                 p < end; p += QTALE_MATVEC_LANES) {
                float16 dp;
                QTALE_PACK_CODE_DOT(p, dp);
                d += dp;
            }
            if (gi & 1) acc1 = fma((float16)(s[gi]), d, acc1);
            else acc0 = fma((float16)(s[gi]), d, acc0);
        }
    }
    return qtale_sum16((acc0 + acc1) + accOffsets);
}

/* One row's dot product with x on CPU devices (see the top): per group, the codes' dot with x and the
   sum of x, then one scale and one offset term. Independent accumulators keep FMA latency off the
   critical path (a single chain would wait four cycles per FMA). */
QTALE_INLINE float qtale_row_dot_cpu(const __global float *x, const __global uchar *codes, const __global half *scales,
                                     const __global half *offsets, const int K, const int groupSize, const int groups,
                                     const int rowsLeft, const int bits) {
    const int packs = (K + QTALE_CODES_PER_PACK - 1) >> 5;
    const int fullPacks = K >> 5;
    const int packsPerGroup = groupSize >> 5;
    float16 scaled0 = 0.0f, scaled1 = 0.0f, offset0 = 0.0f, offset1 = 0.0f;
    float s[16], o[16];
    for (int g0 = 0; g0 < groups; g0 += 16) {
        const int blockGroups = min(16, groups - g0);
        if (packsPerGroup == 1 && g0 + 16 <= fullPacks) {
            /* Sixteen whole packs, one per group: unrolled, so the block's scales and offsets stay in
               registers (a private array would live in PoCL's per-work-item memory; +5% decode). */
            const float16 blockScales = vload_half16(0, scales + g0), blockOffsets = vload_half16(0, offsets + g0);
            #pragma unroll
            for (int gi = 0; gi < 16; gi++) {
                const int p = g0 + gi;
                const float16 xLow = vload16(0, x + p * 32), xHigh = vload16(0, x + p * 32 + 16);
                float16 low, high;
                qtale_unpack(codes + p * QTALE_PACK_BYTES(bits), bits, &low, &high);
                if (gi & 1) {
                    scaled1 = fma((float16)(blockScales[gi]), fma(high, xHigh, low * xLow), scaled1);
                    offset1 = fma((float16)(blockOffsets[gi]), xLow + xHigh, offset1);
                } else {
                    scaled0 = fma((float16)(blockScales[gi]), fma(high, xHigh, low * xLow), scaled0);
                    offset0 = fma((float16)(blockOffsets[gi]), xLow + xHigh, offset0);
                }
            }
            continue;
        }
        /* Any other block (the last, partial one; several packs per group): group by group. */
        qtale_group_block(scales, offsets, g0, groups, rowsLeft * groups - g0, s, o);
        for (int gi = 0; gi < blockGroups; gi++) {
            const int first = (g0 + gi) * packsPerGroup, end = min(packs, first + packsPerGroup);
            float16 dotLow = 0.0f, dotHigh = 0.0f, sumLow = 0.0f, sumHigh = 0.0f;
            for (int p = first; p < end; p++) {
                float16 xLow, xHigh, low, high;
                qtale_pack_inputs(x, p, fullPacks, K, &xLow, &xHigh);
                qtale_unpack(codes + p * QTALE_PACK_BYTES(bits), bits, &low, &high);
                dotLow = fma(low, xLow, dotLow);
                dotHigh = fma(high, xHigh, dotHigh);
                sumLow += xLow;
                sumHigh += xHigh;
            }
            if (gi & 1) {
                scaled1 = fma((float16)(s[gi]), dotLow + dotHigh, scaled1);
                offset1 = fma((float16)(o[gi]), sumLow + sumHigh, offset1);
            } else {
                scaled0 = fma((float16)(s[gi]), dotLow + dotHigh, scaled0);
                offset0 = fma((float16)(o[gi]), sumLow + sumHigh, offset0);
            }
        }
    }
    return qtale_sum16((scaled0 + scaled1) + (offset0 + offset1));
}

/*
 * 4-bit decode on CPU devices with integer dot products (QTALE_SPLIT_DECODE: CPU devices whose OpenCL
 * compiler is clang, as PoCL's is; K <= QTALE_SPLIT_MAX_K). Each work-group first writes x into local
 * memory as two int16 terms per quantization group g:
 *   x_k = step_g * (high_k + low_k / 32768),  step_g = max_{k in g} |x_k| / 32767,
 * high_k = round(x_k / step_g) and low_k the rounded rest, so the pair carries 31 bits, more than
 * float32's 24; it also keeps each group's float sum of x. A row's dot is then
 *   row . x = sum_g scale_g step_g (H_g + L_g / 32768) + offset_g sum_{k in g} x_k,
 *   H_g = sum_{k in g} code_k high_k,  L_g = sum_{k in g} code_k low_k   (exact in int32).
 * Codes and terms are int16, so 32 products and their pairwise sums are one vpmaddwd on x86, where
 * float32 converts 32 codes to float and needs two FMAs. Packs go in pairs: one 32-byte load holds
 * two packs, codes 0..15 of both in the low nibbles, so local memory keeps x in the matching order
 * (QTALE_SPLIT_BLOCK) and the two packs' products land in lanes 0..7 and 8..15 of one vector.
 * On PoCL 3.1 (2 threads) the model's 4-bit decode matmuls take 14-20% less time than in float32 and
 * the 4096x14336 GEMV 35% less; decode went from about 100 to about 108 tokens/s.
 * 8-bit rows (the output head) stay in float32: split, they ran 20-35% slower (one pack per 32 bytes
 * halves the work per load, and the head's 768 work-groups each split x). So do 3-bit rows, whose
 * unpack LLVM no longer pairs into vpmaddwd, and rows longer than the local arrays.
 */
#if QTALE_CPU_DEVICE && defined(__clang__)
#define QTALE_SPLIT_DECODE 1
#else
#define QTALE_SPLIT_DECODE 0
#endif
#ifndef QTALE_SPLIT_MAX_K
#define QTALE_SPLIT_MAX_K 16384
#endif
#define QTALE_SPLIT_SCALE 32768.0f
/* Rows one counter increment hands out (matmul_vec on CPU devices; see the top). */
#ifndef QTALE_ROW_BLOCK
#define QTALE_ROW_BLOCK 256
#endif
/* The short16 block of local memory that holds x[32p + 16 half .. + 16): packs 2q and 2q + 1 keep
   their first halves in blocks 4q, 4q + 1 and their second halves in 4q + 2, 4q + 3. */
#define QTALE_SPLIT_BLOCK(p, half) (4 * ((p) >> 1) + 2 * (half) + ((p) & 1))

#if QTALE_SPLIT_DECODE
typedef short qtale_short32 __attribute__((ext_vector_type(32)));
typedef int qtale_int32x32 __attribute__((ext_vector_type(32)));
/* 32 bytes read with any alignment (a 4-bit pack pair starts at a multiple of 32 bytes only within a row). */
typedef uchar qtale_bytes32 __attribute__((ext_vector_type(32), aligned(1)));

QTALE_INLINE qtale_short32 qtale_join(const short16 a, const short16 b) {
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                   23, 24, 25, 26, 27, 28, 29, 30, 31);
}

/* c . v in sixteen lanes, lane i = c[2i] v[2i] + c[2i+1] v[2i+1]: vpmaddwd. Through the builtin where
   the target has AVX-512BW, so that sums of several stay integer: written as vector arithmetic, LLVM
   reassociates such sums and then no longer recognises the pairing. */
#if defined(__AVX512BW__)
typedef short qtale_v32hi __attribute__((vector_size(64)));
QTALE_INLINE int16 qtale_madd(const qtale_short32 c, const qtale_short32 v) {
    return __builtin_convertvector(__builtin_ia32_pmaddwd512(__builtin_convertvector(c, qtale_v32hi),
                                                             __builtin_convertvector(v, qtale_v32hi)), int16);
}
#else
QTALE_INLINE int16 qtale_madd(const qtale_short32 c, const qtale_short32 v) {
    const qtale_int32x32 p = __builtin_convertvector(c, qtale_int32x32) * __builtin_convertvector(v, qtale_int32x32);
    return __builtin_shufflevector(p, p, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
         + __builtin_shufflevector(p, p, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
#endif

/* The two terms' integer dots as floats, H + L / 32768, in sixteen lanes to be summed. */
QTALE_INLINE float16 qtale_split_terms(const int16 h, const int16 l) {
    return fma(convert_float16(l), (float16)(1.0f / QTALE_SPLIT_SCALE), convert_float16(h));
}

/* Packs p and p + 1 (p even) against the split x, as the terms' integer dots (lanes 0..7 from pack p,
   8..15 from pack p + 1) added to h and l. */
QTALE_INLINE void qtale_pair_dot(const __global uchar *codes, const __local short16 *high, const __local short16 *low,
                                 const int p, int16 *h, int16 *l) {
    /* One 32-byte load: codes 0..15 of both packs in the low nibbles, codes 16..31 in the high ones. */
    const qtale_short32 b = __builtin_convertvector(*(const __global qtale_bytes32 *)(codes + p * 16), qtale_short32);
    const qtale_short32 first = b & (short)15, second = b >> (short)4;
    const __local short16 *x = high + 2 * p, *r = low + 2 * p;
    *h += qtale_madd(first, qtale_join(x[0], x[1])) + qtale_madd(second, qtale_join(x[2], x[3]));
    *l += qtale_madd(first, qtale_join(r[0], r[1])) + qtale_madd(second, qtale_join(r[2], r[3]));
}

/* Pack p alone, added to h and l like qtale_pair_dot. */
QTALE_INLINE void qtale_single_dot(const __global uchar *codes, const __local short16 *high, const __local short16 *low,
                                   const int p, int16 *h, int16 *l) {
    const short16 b = convert_short16(vload16(0, codes + p * 16));
    const qtale_short32 c = qtale_join(b & (short16)(15), b >> (short16)(4));
    const int b0 = QTALE_SPLIT_BLOCK(p, 0), b1 = QTALE_SPLIT_BLOCK(p, 1);
    *h += qtale_madd(c, qtale_join(high[b0], high[b1]));
    *l += qtale_madd(c, qtale_join(low[b0], low[b1]));
}

/* v rounded to the nearest integer (ties to even) for |v| < 2^22: adding and subtracting 1.5 * 2^23
   rounds in the float unit, two instructions where PoCL's rint() is a library sequence of twenty. */
QTALE_INLINE float16 qtale_round(const float16 v) {
    return (v + 12582912.0f) - 12582912.0f;
}

/* Group g of x as the two int16 terms, its step and its float sum (see above). Inputs past K are zero
   up to the end of the last pack, whose codes are zero too. A NaN or infinite input reaches the output
   through the sum (the offset term), as it would in float32. */
QTALE_INLINE void qtale_split_group(const __global float *x, const int g, const int groupSize, const int K,
                                    __local short16 *high, __local short16 *low, __local float *step, __local float *sum) {
    const int start = g * groupSize, end = min(start + groupSize, (K + 31) & ~31);
    float16 largest = 0.0f, total = 0.0f;
    for (int k = start; k < end; k += 16) {
        const float16 v = qtale_load16(x, k, K);
        largest = max(largest, fabs(v));
        total += v;
    }
    const float8 l8 = max(largest.lo, largest.hi);
    const float4 l4 = max(l8.lo, l8.hi);
    const float2 l2 = max(l4.lo, l4.hi);
    const float maxAbs = max(l2.x, l2.y);
    /* A group whose inputs are all below 1e-30 in magnitude (none in a model's activations) enters
       through its sum alone: its step would reach float32's denormals. */
    const float s = maxAbs / 32767.0f, inverse = maxAbs > 1e-30f ? 32767.0f / maxAbs : 0.0f;
    step[g] = s;
    sum[g] = qtale_sum16(total);
    for (int k = start; k < end; k += 16) {
        const float16 v = qtale_load16(x, k, K);
        /* |v| <= maxAbs keeps h within +-32767 and the rest's term within +-16384 (plus rounding);
           the rest is scaled by inverse first, since inverse * 32768 may overflow. */
        const float16 h = qtale_round(v * inverse);
        const int block = QTALE_SPLIT_BLOCK(k >> 5, (k >> 4) & 1);
        high[block] = convert_short16(h);
        low[block] = convert_short16(qtale_round(fma(-h, (float16)(s), v) * inverse * QTALE_SPLIT_SCALE));
    }
}

/* One row's dot product with the split x (see above). */
QTALE_INLINE float qtale_row_dot_split(const __global uchar *codes, const __global half *scales, const __global half *offsets,
                                       const __local short16 *high, const __local short16 *low, const __local float *step,
                                       const __local float *sum, const int K, const int groupSize, const int groups,
                                       const int rowsLeft) {
    const int packs = (K + QTALE_CODES_PER_PACK - 1) >> 5;
    const int packsPerGroup = groupSize >> 5;
    float16 scaled0 = 0.0f, scaled1 = 0.0f, offsetTerms = 0.0f;
    float rest = 0.0f;
    float s[16], o[16];
    for (int g0 = 0; g0 < groups; g0 += 16) {
        if (packsPerGroup == 1 && g0 + 16 <= groups) {
            /* Sixteen groups of one pack each, eight pairs unrolled: the multipliers stay in registers. */
            const float16 factors = vload_half16(0, scales + g0) * vload16(0, step + g0);
            offsetTerms = fma(vload_half16(0, offsets + g0), vload16(0, sum + g0), offsetTerms);
            /* Pair (a, b): factors[a] in lanes 0..7, factors[b] in 8..15 (one vpermps). */
#define QTALE_PAIR(a, b, acc)                                                                                \
            do {                                                                                         \
                int16 h_ = 0, l_ = 0;                                                                    \
                qtale_pair_dot(codes, high, low, g0 + (a), &h_, &l_);                                   \
                acc = fma(__builtin_shufflevector(factors, factors, a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b), \
                          qtale_split_terms(h_, l_), acc);                                               \
            } while (0)
            QTALE_PAIR(0, 1, scaled0);
            QTALE_PAIR(2, 3, scaled1);
            QTALE_PAIR(4, 5, scaled0);
            QTALE_PAIR(6, 7, scaled1);
            QTALE_PAIR(8, 9, scaled0);
            QTALE_PAIR(10, 11, scaled1);
            QTALE_PAIR(12, 13, scaled0);
            QTALE_PAIR(14, 15, scaled1);
#undef QTALE_PAIR
            continue;
        }
        /* Any other block (the last, partial one; several packs per group): group by group. */
        qtale_group_block(scales, offsets, g0, groups, rowsLeft * groups - g0, s, o);
        const int blockGroups = min(16, groups - g0);
        for (int gi = 0; gi < blockGroups; gi++) {
            s[gi] *= step[g0 + gi];
            rest = fma(o[gi], sum[g0 + gi], rest);
        }
        if (packsPerGroup == 1) {
            int gi = 0;
            for (; gi + 1 < blockGroups; gi += 2) {
                int16 h = 0, l = 0;
                qtale_pair_dot(codes, high, low, g0 + gi, &h, &l);
                scaled0 = fma((float16)((float8)(s[gi]), (float8)(s[gi + 1])), qtale_split_terms(h, l), scaled0);
            }
            if (gi < blockGroups) {
                int16 h = 0, l = 0;
                qtale_single_dot(codes, high, low, g0 + gi, &h, &l);
                scaled1 = fma((float16)(s[gi]), qtale_split_terms(h, l), scaled1);
            }
            continue;
        }
        for (int gi = 0; gi < blockGroups; gi++) {
            const int first = (g0 + gi) * packsPerGroup, end = min(packs, first + packsPerGroup);
            int16 h = 0, l = 0;
            int p = first;
            /* Pairs start at even packs: with an odd number of packs per group, half the groups do not. */
            if ((packsPerGroup & 1) == 0) {
                for (; p + 1 < end; p += 2) qtale_pair_dot(codes, high, low, p, &h, &l);
            }
            for (; p < end; p++) qtale_single_dot(codes, high, low, p, &h, &l);
            scaled0 = fma((float16)(s[gi]), qtale_split_terms(h, l), scaled0);
        }
    }
    return qtale_sum16((scaled0 + scaled1) + offsetTerms) + rest;
}
#endif

QTALE_KERNEL void matmul_vec(__global const float *input, __global const uchar *codes, __global const half *scales,
                             __global const half *offsets, __global float *output, const KernelParameters params,
                             QTALE_PREDICATE_ARGUMENTS
#if QTALE_CPU_DEVICE
                             , __global volatile int *rowBlocks
#endif
                             ) {
    const int bits = QTALE_P(0), groupSize = QTALE_P(1), K = QTALE_P(2), groups = QTALE_P(5);
    /* A clear predicate leaves no row to compute rather than returning: every work-item must reach the
       barriers (common.h). */
    const int N = QTALE_PREDICATE_HOLDS ? QTALE_P(3) : 0;
    const int lid = (int)get_local_id(0);
    const __global float *x = input + QTALE_P(7);
#if QTALE_CPU_DEVICE
    /* Work-item 0 of each work-group (one per compute unit) takes blocks of rows from rowBlocks[0]
       until none is left; the last work-group out resets the counters (see the top). A clear predicate
       (N = 0) returns before touching them. */
    if (lid != 0 || N == 0) return;
#if QTALE_SPLIT_DECODE
    __local short16 high[QTALE_SPLIT_MAX_K / 16], low[QTALE_SPLIT_MAX_K / 16];
    __local float step[QTALE_SPLIT_MAX_K / 32], sums[QTALE_SPLIT_MAX_K / 32];
    const bool split = bits == 4 && K <= QTALE_SPLIT_MAX_K;
    if (split) {
        for (int g = 0; g < groups; g++) qtale_split_group(x, g, groupSize, K, high, low, step, sums);
    }
#endif
    for (;;) {
        const int first = atomic_inc(rowBlocks) * QTALE_ROW_BLOCK;
        if (first >= N) break;
        const int last = min(N, first + QTALE_ROW_BLOCK);
        for (int n = first; n < last; n++) {
            const size_t row = (size_t)(QTALE_P(12) + n);
            const __global uchar *rowCodes = codes + row * QTALE_P(4);
            const __global half *rowScales = scales + row * groups, *rowOffsets = offsets + row * groups;
            float sum;
#if QTALE_SPLIT_DECODE
            if (split) sum = qtale_row_dot_split(rowCodes, rowScales, rowOffsets, high, low, step, sums, K, groupSize, groups, N - n);
            else
#endif
            if (bits == 4) sum = qtale_row_dot_cpu(x, rowCodes, rowScales, rowOffsets, K, groupSize, groups, N - n, 4);
            else if (bits == 8) sum = qtale_row_dot_cpu(x, rowCodes, rowScales, rowOffsets, K, groupSize, groups, N - n, 8);
            else sum = qtale_row_dot_cpu(x, rowCodes, rowScales, rowOffsets, K, groupSize, groups, N - n, 3);
            qtale_store_output(output + QTALE_P(9) + n, sum, QTALE_P(11));
        }
    }
    if (atomic_inc(rowBlocks + 1) == (int)get_num_groups(0) - 1) {
        rowBlocks[0] = 0;
        rowBlocks[1] = 0;
    }
#else
    const int lane = lid % QTALE_MATVEC_LANES, r = lid / QTALE_MATVEC_LANES;
    const int n = (int)get_group_id(0) * QTALE_MATVEC_ROWS + r;
    const bool active = r < QTALE_MATVEC_ROWS && n < N;

    /* x summed over each group, once for all the rows of the work-group. */
    __local float sx[QTALE_MAX_GROUPS];
    const bool useSums = N > 0 && groups <= QTALE_MAX_GROUPS;
    if (useSums) {
        for (int g = lid; g < groups; g += QTALE_WG) {
            const int start = g * groupSize, end = min(K, start + groupSize);
            float16 sum16 = 0.0f;
            for (int k = start; k < end; k += 16) sum16 += qtale_load16(x, k, end);
            sx[g] = qtale_sum16(sum16);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float sum = 0.0f;
    if (active) {
        const size_t row = (size_t)(QTALE_P(12) + n);
        const __global uchar *rowCodes = codes + row * QTALE_P(4);
        const __global half *rowScales = scales + row * groups;
        const __global half *rowOffsets = offsets + row * groups;
        const int rowsLeft = N - n;
        if (useSums) {
            if (bits == 4) sum = qtale_row_dot_sums(x, rowCodes, rowScales, rowOffsets, sx, K, groupSize, groups, rowsLeft, lane, 4);
            else if (bits == 8) sum = qtale_row_dot_sums(x, rowCodes, rowScales, rowOffsets, sx, K, groupSize, groups, rowsLeft, lane, 8);
            else sum = qtale_row_dot_sums(x, rowCodes, rowScales, rowOffsets, sx, K, groupSize, groups, rowsLeft, lane, 3);
        } else {
            if (bits == 4) sum = qtale_row_dot(x, rowCodes, rowScales, rowOffsets, K, groupSize, groups, rowsLeft, lane, 4);
            else if (bits == 8) sum = qtale_row_dot(x, rowCodes, rowScales, rowOffsets, K, groupSize, groups, rowsLeft, lane, 8);
            else sum = qtale_row_dot(x, rowCodes, rowScales, rowOffsets, K, groupSize, groups, rowsLeft, lane, 3);
        }
    }
#if QTALE_MATVEC_LANES == 1
    if (active) qtale_store_output(output + QTALE_P(9) + n, sum, QTALE_P(11));
#else
    __local float partial[QTALE_WG];
    partial[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lane == 0 && active) {
        float total = 0.0f;
        for (int i = 0; i < QTALE_MATVEC_LANES; i++) total += partial[lid + i];
        qtale_store_output(output + QTALE_P(9) + n, total, QTALE_P(11));
    }
#endif
#endif
}

/* The tile's dot products for one weight format. */
QTALE_INLINE void qtale_tile(const __global float *input, const __global uchar *codes, const __global half *scales,
                             const __global half *offsets, __global float *output, const KernelParameters params,
                             const int n, const int t0, const int bits) {
    const int groupSize = QTALE_P(1), K = QTALE_P(2), T = QTALE_P(6);
    const int packs = (K + QTALE_CODES_PER_PACK - 1) >> 5;
    const int fullPacks = K >> 5;
    const int packsPerGroup = groupSize >> 5;
    const int groups = QTALE_P(5);
    const size_t row = (size_t)(QTALE_P(12) + n);
    const __global uchar *rowCodes = codes + row * QTALE_P(4);
    const __global half *rowScales = scales + row * QTALE_P(5);
    const __global half *rowOffsets = offsets + row * QTALE_P(5);
    /* Tokens past T repeat the last token (valid memory); their sums are not stored. */
    const __global float *x[QTALE_TILE_TOKENS];
    #pragma unroll
    for (int j = 0; j < QTALE_TILE_TOKENS; j++) {
        x[j] = input + QTALE_P(7) + (size_t)min(t0 + j, T - 1) * QTALE_P(8);
    }
    float16 acc[QTALE_TILE_TOKENS];
    #pragma unroll
    for (int j = 0; j < QTALE_TILE_TOKENS; j++) acc[j] = 0.0f;

    float s[16], o[16];
    for (int g0 = 0; g0 < groups; g0 += 16) {
        qtale_group_block(rowScales, rowOffsets, g0, groups, (QTALE_P(3) - n) * groups - g0, s, o);
        const int blockGroups = min(16, groups - g0);
        for (int gi = 0; gi < blockGroups; gi++) {
            const int first = (g0 + gi) * packsPerGroup, end = min(packs, first + packsPerGroup);
            const float16 scale = (float16)(s[gi]), offset = (float16)(o[gi]);
            for (int p = first; p < end; p++) {
                float16 low, high;
                qtale_unpack(rowCodes + p * QTALE_PACK_BYTES(bits), bits, &low, &high);
                low = fma(low, scale, offset);
                high = fma(high, scale, offset);
                if (p < fullPacks) {
                    #pragma unroll
                    for (int j = 0; j < QTALE_TILE_TOKENS; j++) {
                        acc[j] = fma(low, vload16(0, x[j] + p * 32), acc[j]);
                        acc[j] = fma(high, vload16(0, x[j] + p * 32 + 16), acc[j]);
                    }
                } else {
                    #pragma unroll
                    for (int j = 0; j < QTALE_TILE_TOKENS; j++) {
                        acc[j] = fma(low, qtale_load16(x[j], p * 32, K), acc[j]);
                        acc[j] = fma(high, qtale_load16(x[j], p * 32 + 16, K), acc[j]);
                    }
                }
            }
        }
    }
    __global float *out = output + QTALE_P(9) + n;
    #pragma unroll
    for (int j = 0; j < QTALE_TILE_TOKENS; j++) {
        if (t0 + j < T) qtale_store_output(out + (size_t)(t0 + j) * QTALE_P(10), qtale_sum16(acc[j]), QTALE_P(11));
    }
}

QTALE_KERNEL void matmul_mat(__global const float *input, __global const uchar *codes, __global const half *scales,
                             __global const half *offsets, __global float *output, const KernelParameters params,
                             QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int bits = QTALE_P(0), N = QTALE_P(3);
    const int n = (int)get_group_id(0) * QTALE_TILE_ROWS + (int)get_local_id(0);
    const int t0 = (int)get_group_id(1) * QTALE_TILE_TOKENS;
    if (n >= N) return;
    if (bits == 4) qtale_tile(input, codes, scales, offsets, output, params, n, t0, 4);
    else if (bits == 8) qtale_tile(input, codes, scales, offsets, output, params, n, t0, 8);
    else qtale_tile(input, codes, scales, offsets, output, params, n, t0, 3);
}
