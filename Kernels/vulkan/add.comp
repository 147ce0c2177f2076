/*
 * add: output = a + b, elementwise; may run in place over a.   (must match ReferenceEngine's add)
 *
 * Bindings (set 0): 0 a, 1 b, 2 output (float32; a and output may be one buffer, so nothing is restrict).
 * Push constants:   rows, columns, aOffset, aStride, bOffset, bStride, outputOffset, outputStride.
 * Work-groups:      (ceil(columns / QTALE_WG), rows); invocation x owns column x of row y.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer A { float a[]; };
layout(set = 0, binding = 1) readonly buffer B { float b[]; };
layout(set = 0, binding = 2) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, aOffset, aStride, bOffset, bStride, outputOffset, outputStride;
} p;

void main() {
    int c = int(gl_GlobalInvocationID.x), r = int(gl_WorkGroupID.y);
    if (c >= p.columns || r >= p.rows) return;
    outputs[p.outputOffset + r * p.outputStride + c] = a[p.aOffset + r * p.aStride + c] + b[p.bOffset + r * p.bStride + c];
}
