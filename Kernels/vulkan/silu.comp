/*
 * silu (Op.silu): output = input / (1 + exp(-input)), elementwise; output may alias input.
 * Bindings:         0 input, 1 output
 * Push constants:   0 rows, 1 columns, 2 inputOffset, 3 inputStride, 4 outputOffset, 5 outputStride
 * Work-groups:      (ceil(columns / QTALE_WG), rows); invocation x owns column x of row y.
 * Must match ReferenceEngine.encode(.silu) (NMSE 1e-12).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Input { float inputs[]; };
layout(set = 0, binding = 1) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, inputOffset, inputStride, outputOffset, outputStride;
} p;

void main() {
    int c = int(gl_GlobalInvocationID.x), r = int(gl_WorkGroupID.y);
    if (c >= p.columns || r >= p.rows) return;
    float x = inputs[p.inputOffset + r * p.inputStride + c];
    outputs[p.outputOffset + r * p.outputStride + c] = x / (1.0 + exp(-x));
}
