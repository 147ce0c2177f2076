/*
 * Shared by every OpenCL kernel file (inlined by scripts/kernelgen.py and by the engine's disk loader).
 *
 * Build options the engine passes (values from Sources/QTaleKernels/KernelPlanner.swift, the single
 * source; the kernels assume nothing else about them):
 *   -DQTALE_WG                work-group size of every kernel (KernelPlanner.workgroupSize)
 *   -DQTALE_MATVEC_ROWS       output rows per matmul_vec work-group (KernelPlanner.matvecRowsPerGroup)
 *   -DQTALE_TILE_ROWS         matmul_mat tile rows (KernelPlanner.matmulTileRows)
 *   -DQTALE_TILE_TOKENS       matmul_mat tile tokens (KernelPlanner.matmulTileTokens)
 *   -DQTALE_CPU_DEVICE=0|1    1 on CPU devices (PoCL), where a work-group runs as a loop over its
 *                             work-items on one core: kernels then give a work-item more work and
 *                             skip barriers (see matmul.cl, attention.cl)
 *
 * Arguments: the buffers in binding order; the parameters, sixteen 32-bit words as one struct argument
 * (KernelParameters in Sources/QTaleKernels/KernelLaunch.swift; offsets and row strides are in
 * elements); then the predicate flag (below).
 */
#ifndef QTALE_OPENCL_COMMON_H
#define QTALE_OPENCL_COMMON_H

#ifndef QTALE_WG
#error "build with -DQTALE_WG=<work-group size>"
#endif

#ifndef QTALE_CPU_DEVICE
#define QTALE_CPU_DEVICE 0
#endif

typedef struct { int w[16]; } KernelParameters;

/* Parameter word i as an int, or as the float whose bits it holds. */
#define QTALE_P(i) (params.w[(i)])
#define QTALE_PF(i) as_float(params.w[(i)])

#define QTALE_KERNEL __kernel __attribute__((reqd_work_group_size(QTALE_WG, 1, 1)))

/*
 * Predication (ComputeEngine.encodePredicated): every kernel's last two arguments name an int32 flag,
 * a buffer and an element index, and the kernel does nothing when the flag is zero. That is how a
 * decision made on the device (router_decision) skips a block without a round trip to the host:
 * skipped kernels still launch, but read no weights. Outside a predicated region the engine passes a
 * buffer holding 1. Every work-item reads the same flag, so an early return is uniform, which the
 * OpenCL barrier rules allow; but PoCL crashes or miscomputes when work-items return ahead of a
 * barrier, so the kernels with barriers (rms_norm, rope, and matmul_vec on GPUs; on CPU devices it has
 * none) fold QTALE_PREDICATE_HOLDS into their bounds instead and still reach every barrier.
 */
#define QTALE_PREDICATE_ARGUMENTS __global const int *qtale_predicate, const int qtale_predicate_index
#define QTALE_PREDICATE_HOLDS (qtale_predicate[qtale_predicate_index] != 0)
#define QTALE_RETURN_UNLESS_PREDICATED if (!QTALE_PREDICATE_HOLDS) return

#define QTALE_INLINE inline __attribute__((always_inline))

/* x[k .. k+16), reading zeros at and past K. */
QTALE_INLINE float16 qtale_load16(const __global float *x, const int k, const int K) {
    if (k + 16 <= K) return vload16(0, x + k);
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = k + i < K ? x[k + i] : 0.0f;
    return vload16(0, v);
}

QTALE_INLINE float qtale_sum16(const float16 v) {
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    const float2 c = b.lo + b.hi;
    return c.x + c.y;
}

/* Code `j` (0..31) of the pack at `pack`, in the layout of quant_layout.h. */
inline uint qtale_code(const __global uchar *pack, const int j, const int bits) {
    if (bits == 8) return pack[j];
    if (bits == 4) return j < 16 ? (pack[j] & 15u) : (pack[j - 16] >> 4);
    /* 3 bits: two low bits in quarter j / 8 of byte j % 8, bit 2 in bit j of the uint32 at byte 8. */
    const uint low = (pack[j & 7] >> (2 * (j >> 3))) & 3u;
    const uint high = (pack[8 + (j >> 3)] >> (j & 7)) & 1u;
    return low | high << 2;
}

#endif
