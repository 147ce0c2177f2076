/*
 * rms_norm: output[t] = input[t] / sqrt(mean(input[t]^2) + epsilon) * weight    (must match
 * ReferenceEngine.rmsNorm; float32). May run in place (input == output).
 *
 * Bindings (set 0), whole engine buffers: 0 input, 1 weight: uniform texel buffers,
 *                   R32G32B32A32_SFLOAT (see matmul_vec.comp); 2 output: storage buffer, float32
 *                   (input and output may be one buffer: each element is read and written by the
 *                   same invocation).
 * Push constants:   columns, inputOffset, inputStride, weightOffset, outputOffset, outputStride,
 *                   epsilon (float bits).
 * Work-groups:      (rows, 1), of TEAM invocations each (specialization constant 1; the grid does not
 *                   depend on it, see attention.comp): one group per row. Invocation j sums the squares
 *                   of columns 4i .. 4i+3 for i = j, j + TEAM, ...; the TEAM partial sums meet in shared
 *                   memory (one barrier), then each invocation scales the same columns.
 * Specialization constants: 0 QTALE_WG (unused); 1 TEAM; 2 ALIGNED (inputOffset, inputStride and
 * weightOffset multiples of 4; else each 4-column slice is assembled from two texels).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"
#include "vulkan/texel_slice.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 1) const int TEAM = 8;
layout(constant_id = 2) const bool ALIGNED = true;
layout(local_size_x_id = 1) in;

layout(set = 0, binding = 0) uniform samplerBuffer inputs;
layout(set = 0, binding = 1) uniform samplerBuffer weights;
layout(set = 0, binding = 2) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int columns, inputOffset, inputStride, weightOffset, outputOffset, outputStride;
    float epsilon;
} p;

shared float partial[TEAM];

vec4 slice(samplerBuffer b, int e) { return qtale_slice(b, e, ALIGNED); }

/* Zero for the columns of slice i at or past the row's end. */
vec4 clip(vec4 v, int c) {
    return vec4(v.x, c + 1 < p.columns ? v.y : 0.0, c + 2 < p.columns ? v.z : 0.0, c + 3 < p.columns ? v.w : 0.0);
}

void main() {
    int lane = int(gl_LocalInvocationID.x);
    int t = int(gl_WorkGroupID.x);
    int inBase = p.inputOffset + t * p.inputStride;
    vec4 sums = vec4(0.0);
    for (int c = 4 * lane; c < p.columns; c += 4 * TEAM) {
        vec4 x = clip(slice(inputs, inBase + c), c);
        sums = fma(x, x, sums);
    }
    partial[lane] = (sums.x + sums.y) + (sums.z + sums.w);
    barrier();
    if (p.columns == 0) return;
    float total = 0.0;
    for (int j = 0; j < TEAM; j++) total += partial[j];
    float inverse = 1.0 / sqrt(total / float(p.columns) + p.epsilon);
    int outBase = p.outputOffset + t * p.outputStride;
    for (int c = 4 * lane; c < p.columns; c += 4 * TEAM) {
        vec4 v = slice(inputs, inBase + c) * inverse * slice(weights, p.weightOffset + c);
        int o = outBase + c;
        outputs[o] = v.x;
        if (c + 1 < p.columns) outputs[o + 1] = v.y;
        if (c + 2 < p.columns) outputs[o + 2] = v.z;
        if (c + 3 < p.columns) outputs[o + 3] = v.w;
    }
}
