/*
 * embed: output[t] = dequantize(table)[tokens[t]]                     (Op.embed)
 *
 * Bindings: 0 codes (uchar), 1 scales (binary16), 2 offsets (binary16), 3 tokens (int32), 4 output (float)
 * Parameters: 0 bits, 1 groupSize, 2 columns, 3 codeBytesPerRow, 4 groupsPerRow, 5 tokensOffset,
 *             6 outputOffset, 7 outputStride, 8 firstRow (the buffers' row that is row 0 of the table)
 * Work-groups: (ceil(columns / QTALE_WG), T, 1); work-item (x, t) writes column x of token t.
 * Must match Reference+Matmul.swift embed (HostQuantizedMatrix.weight: scale * code + offset in float,
 * two roundings, hence FP_CONTRACT OFF), bit for bit.
 */
#include "quant_layout.h"
#include "opencl/common.h"

#pragma OPENCL FP_CONTRACT OFF

QTALE_KERNEL void embed(__global const uchar *codes, __global const half *scales, __global const half *offsets,
                        __global const int *tokens, __global float *output, const KernelParameters params,
                        QTALE_PREDICATE_ARGUMENTS) {
    QTALE_RETURN_UNLESS_PREDICATED;
    const int bits = QTALE_P(0), groupSize = QTALE_P(1), columns = QTALE_P(2);
    const int c = (int)get_group_id(0) * QTALE_WG + (int)get_local_id(0);
    const int t = (int)get_group_id(1);
    if (c >= columns) return;
    const size_t token = (size_t)(QTALE_P(8) + tokens[QTALE_P(5) + t]);   /* a row of the buffers */
    const __global uchar *pack = codes + token * (size_t)QTALE_P(3)
                               + (size_t)(c / QTALE_CODES_PER_PACK) * QTALE_PACK_BYTES(bits);
    const float code = (float)qtale_code(pack, c % QTALE_CODES_PER_PACK, bits);
    const size_t g = token * (size_t)QTALE_P(4) + (size_t)(c / groupSize);
    const float scaled = vload_half(g, scales) * code;
    output[QTALE_P(6) + (size_t)t * QTALE_P(7) + c] = scaled + vload_half(g, offsets);
}
