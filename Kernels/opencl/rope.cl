/*
 * rope: rotary position embedding in place, GGUF LLaMA "normal" layout      (Op.rope)
 *   in each head of headDim channels, pairs (2i, 2i+1) with 2i < ropeDims rotate by
 *   angle = positions[t] * base^(-2i / ropeDims).
 *
 * Bindings: 0 data (float, read and written), 1 positions (int32)
 * Parameters: 0 rows, 1 columns, 2 headDim, 3 ropeDims, 4 dataOffset, 5 dataStride, 6 positionsOffset,
 *             7 base (float bits)
 * Work-groups: (ceil(heads * ropeDims / 2 / QTALE_WG), rows, 1). Work-item (x, t) with x < ropeDims / 2
 *   computes the rotation of pair x once and applies it to that pair of every head of row t; the
 *   other work-items (and whole work-groups past ropeDims / 2) have nothing to do.
 * Must match Reference+Rope.swift rope (angles in float64; NMSE bound 1e-11 with positions up to 8000,
 * which needs the angle to about 1e-9 relative).
 *
 * How: base^(-2i/ropeDims) = r^i with r = base^(-2/ropeDims), computed once per work-group (one pow,
 * shared through local memory; library pow and sincos cost hundreds of cycles per call on PoCL), then
 * i by squarings. The angle is reduced to [-pi/4, pi/4] plus a quadrant, and sine and cosine come from
 * Taylor polynomials (error below 2e-9 on that range) in float. With cl_khr_fp64 the powers and the
 * reduction are double. Without it they are float: expect NMSE around 1e-7 at positions in the
 * thousands (fails the conformance bound; the model itself stays usable at short contexts).
 */
#include "opencl/common.h"

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double qtale_real;
#else
typedef float qtale_real;
#endif

QTALE_KERNEL void rope(__global float *data, __global const int *positions, const KernelParameters params,
                       QTALE_PREDICATE_ARGUMENTS) {
    const int headDim = QTALE_P(2), ropeDims = QTALE_P(3);
    const int pairs = ropeDims / 2;
    const int heads = QTALE_P(1) / headDim;
    const int lid = (int)get_local_id(0);
    const int i = (int)get_group_id(0) * QTALE_WG + lid;
    const size_t t = get_group_id(1);

    /* No early returns around the barrier (the predicate included): PoCL mis-handles work-items that
       leave before a loop in a kernel with barriers. */
    __local qtale_real sharedRatio;
    if (lid == 0) sharedRatio = pow((qtale_real)QTALE_PF(7), (qtale_real)-2.0 / (qtale_real)ropeDims);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (i < pairs && QTALE_PREDICATE_HOLDS) {
        qtale_real theta = 1.0, power = sharedRatio;
        for (int e = i; e != 0; e >>= 1) {
            if (e & 1) theta *= power;
            power *= power;
        }
        const qtale_real angle = (qtale_real)positions[QTALE_P(6) + t] * theta;
        /* angle = quadrant * pi/2 + r, |r| <= pi/4 (pi/2 in two parts, so the product is exact enough). */
        const qtale_real quadrant = rint(angle * (qtale_real)0.63661977236758134307553505349006);
        const float r = (float)((angle - quadrant * (qtale_real)1.5707963267948965579989817342721)
                                - quadrant * (qtale_real)6.1232339957367658e-17);
        const float r2 = r * r;
        const float s = r * (1.0f + r2 * (-1.0f / 6 + r2 * (1.0f / 120 + r2 * (-1.0f / 5040 + r2 * (1.0f / 362880)))));
        const float c = 1.0f + r2 * (-0.5f + r2 * (1.0f / 24 + r2 * (-1.0f / 720 + r2 * (1.0f / 40320 + r2 * (-1.0f / 3628800)))));
        const int q = (int)((long)quadrant & 3);
        const float sine = q == 0 ? s : q == 1 ? c : q == 2 ? -s : -c;
        const float cosine = q == 0 ? c : q == 1 ? -s : q == 2 ? -c : s;

        __global float *row = data + QTALE_P(4) + t * (size_t)QTALE_P(5) + 2 * i;
        for (int head = 0; head < heads; head++) {
            __global float *pair = row + (size_t)head * headDim;
            const float x0 = pair[0], x1 = pair[1];
            pair[0] = x0 * cosine - x1 * sine;
            pair[1] = x0 * sine + x1 * cosine;
        }
    }
}
