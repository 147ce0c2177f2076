/*
 * move_rows (Op.gatherRows, Op.scatterRows): whole rows of 32-bit elements, copied as bits.
 *   direction 0 (gather):  output[m] = source[indices[m]]
 *   direction 1 (scatter): output[indices[m]] = source[m]; other output rows stay untouched
 * Bindings:         0 source, 1 indices (int32), 2 output
 * Push constants:   0 M, 1 columns, 2 sourceOffset, 3 sourceStride, 4 indicesOffset, 5 outputOffset,
 *                   6 outputStride, 7 direction
 * Work-groups:      (ceil(columns / QTALE_WG), M); invocation x owns column x of moved row y.
 * Must match ReferenceEngine.encode (exactly).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Source { uint source[]; };
layout(set = 0, binding = 1) readonly buffer Indices { int indices[]; };
layout(set = 0, binding = 2) buffer Output { uint outputs[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, sourceOffset, sourceStride, indicesOffset, outputOffset, outputStride, direction;
} p;

void main() {
    int c = int(gl_GlobalInvocationID.x), m = int(gl_WorkGroupID.y);
    if (c >= p.columns || m >= p.rows) return;
    int index = indices[p.indicesOffset + m];
    int from = p.direction == 0 ? index : m, to = p.direction == 0 ? m : index;
    outputs[p.outputOffset + to * p.outputStride + c] = source[p.sourceOffset + from * p.sourceStride + c];
}
