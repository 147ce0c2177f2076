/*
 * swiglu: output = silu(gate) * up = gate / (1 + exp(-gate)) * up, elementwise; may run in place
 * over gate.                                       (must match ReferenceEngine's swiGLU, float32 here)
 *
 * Bindings (set 0): 0 gate, 1 up, 2 output (float32; gate and output may be one buffer, so nothing
 *                   is restrict).
 * Push constants:   rows, columns, gateOffset, gateStride, upOffset, upStride, outputOffset, outputStride.
 * Work-groups:      (ceil(columns / QTALE_WG), rows); invocation x owns column x of row y.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Gate { float gate[]; };
layout(set = 0, binding = 1) readonly buffer Up { float up[]; };
layout(set = 0, binding = 2) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, aOffset, aStride, bOffset, bStride, outputOffset, outputStride;
} p;

void main() {
    int c = int(gl_GlobalInvocationID.x), r = int(gl_WorkGroupID.y);
    if (c >= p.columns || r >= p.rows) return;
    float g = gate[p.aOffset + r * p.aStride + c];
    float u = up[p.bOffset + r * p.bStride + c];
    outputs[p.outputOffset + r * p.outputStride + c] = g / (1.0 + exp(-g)) * u;
}
