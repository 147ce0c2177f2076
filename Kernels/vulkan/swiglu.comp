/*
 * swiglu: output = silu(gate) * up = gate / (1 + exp(-gate)) * up, elementwise; may run in place
 * over gate.                                       (must match ReferenceEngine's swiGLU, float32 here)
 *
 * Bindings (set 0), whole engine buffers: 0 gate, 1 up: uniform texel buffers, R32G32B32A32_SFLOAT
 *                   (see matmul_vec.comp); 2 output: storage buffer, float32 (gate and output may be one buffer: each
 *                   element is read and written by the same invocation).
 * Push constants:   rows, columns, aOffset, aStride, bOffset, bStride, outputOffset, outputStride.
 * Work-groups:      (ceil(columns / QTALE_WG), rows), of QUADS = QTALE_WG / 4 invocations (specialization
 *                   constant 1, the work-group size): invocation i owns columns 4i .. 4i+3 of the
 *                   group's QTALE_WG columns of row y, read as one texel of each input.
 * Specialization constants: 0 QTALE_WG; 1 QUADS; 2 ALIGNED (both inputs' offsets and strides are
 * multiples of 4; else each 4-column slice is assembled from two texels).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"
#include "vulkan/texel_slice.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 1) const uint QUADS = 16;
layout(constant_id = 2) const bool ALIGNED = true;
layout(local_size_x_id = 1) in;

layout(set = 0, binding = 0) uniform samplerBuffer gateTexels;
layout(set = 0, binding = 1) uniform samplerBuffer upTexels;
layout(set = 0, binding = 2) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, aOffset, aStride, bOffset, bStride, outputOffset, outputStride;
} p;

vec4 slice(samplerBuffer b, int e) { return qtale_slice(b, e, ALIGNED); }

void main() {
    int c = int(gl_WorkGroupID.x * QTALE_WG + 4u * gl_LocalInvocationID.x), r = int(gl_WorkGroupID.y);
    if (c >= p.columns || r >= p.rows) return;
    vec4 g = slice(gateTexels, p.aOffset + r * p.aStride + c);
    vec4 u = slice(upTexels, p.bOffset + r * p.bStride + c);
    vec4 v = g / (1.0 + exp(-g)) * u;
    int o = p.outputOffset + r * p.outputStride + c;
    outputs[o] = v.x;
    if (c + 1 < p.columns) outputs[o + 1] = v.y;
    if (c + 2 < p.columns) outputs[o + 2] = v.z;
    if (c + 3 < p.columns) outputs[o + 3] = v.w;
}
