/*
 * embed: output[t][c] = dequantize(table)[tokens[t]][c]        (must match ReferenceEngine.embed)
 *
 * Bindings (set 0): 0 codes (packed, read as uint words), 1 scales (binary16 pairs in uint words),
 *                   2 offsets (likewise), 3 tokens (int32), 4 output (float32).
 * Push constants:   bits, groupSize, columns, codeBytesPerRow, groupsPerRow, tokensOffset,
 *                   outputOffset, outputStride (offsets and strides in elements), firstRow (the
 *                   buffers' row that is row 0 of the table).
 * Work-groups:      (ceil(columns / QTALE_WG), T); invocation x owns column c = global x of token y.
 * w = scale * code + offset in float32, as QuantizedMatrix.weight computes it.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Codes { uint codes[]; };
layout(set = 0, binding = 1) readonly buffer Scales { uint scales[]; };
layout(set = 0, binding = 2) readonly buffer Offsets { uint offsets[]; };
layout(set = 0, binding = 3) readonly buffer Tokens { int tokens[]; };
layout(set = 0, binding = 4) writeonly buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int bits, groupSize, columns, codeBytesPerRow, groupsPerRow, tokensOffset, outputOffset, outputStride, firstRow;
} p;

/* Code `c` of the row whose packed codes start at byte `rowByte` (packs are word aligned). */
uint codeAt(uint rowByte, uint c) {
    uint pack = rowByte + (c / QTALE_CODES_PER_PACK) * uint(QTALE_PACK_BYTES(p.bits));
    uint j = c % QTALE_CODES_PER_PACK;
    if (p.bits == 8) {
        uint b = pack + j;
        return (codes[b >> 2] >> ((b & 3u) * 8u)) & 0xFFu;
    }
    if (p.bits == 4) {
        uint b = pack + (j & 15u);
        return (codes[b >> 2] >> ((b & 3u) * 8u + (j >> 4) * 4u)) & 0xFu;
    }
    uint b = pack + (j & 7u);
    uint low = (codes[b >> 2] >> ((b & 3u) * 8u + (j >> 3) * 2u)) & 3u;
    uint high = (codes[(pack + 8u) >> 2] >> j) & 1u;
    return low | (high << 2);
}

float halfAt(uint word, uint index) {
    vec2 pair = unpackHalf2x16(word);
    return (index & 1u) == 0u ? pair.x : pair.y;
}

void main() {
    uint c = gl_GlobalInvocationID.x;
    uint t = gl_WorkGroupID.y;
    if (c >= uint(p.columns)) return;
    uint row = uint(p.firstRow + tokens[p.tokensOffset + int(t)]);   // a row of the buffers
    uint g = row * uint(p.groupsPerRow) + c / uint(p.groupSize);
    float scale = halfAt(scales[g >> 1], g);
    float offset = halfAt(offsets[g >> 1], g);
    float code = float(codeAt(row * uint(p.codeBytesPerRow), c));
    outputs[p.outputOffset + int(t) * p.outputStride + int(c)] = scale * code + offset;
}
