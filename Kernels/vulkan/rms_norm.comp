/*
 * rms_norm: output[t] = input[t] / sqrt(mean(input[t]^2) + epsilon) * weight    (must match
 * ReferenceEngine.rmsNorm; float32). May run in place (input == output).
 *
 * Bindings (set 0): 0 input, 1 weight, 2 output (float32 storage buffers; input and output may be
 *                   the same buffer, so nothing is declared restrict).
 * Push constants:   columns, inputOffset, inputStride, weightOffset, outputOffset, outputStride,
 *                   epsilon (float bits).
 * Work-groups:      (rows, 1), of TEAM invocations each (specialization constant 1; the grid does not
 *                   depend on it, see attention.comp): one group per row. Invocation j sums the squares
 *                   of columns j, j + TEAM, ...; the TEAM partial sums meet in shared memory (one
 *                   barrier), then each invocation scales its columns. Each element is read and written
 *                   by the same invocation, so running in place is safe.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 1) const int TEAM = 8;
layout(local_size_x_id = 1) in;

layout(set = 0, binding = 0) readonly buffer Input { float inputs[]; };
layout(set = 0, binding = 1) readonly buffer Weight { float weights[]; };
layout(set = 0, binding = 2) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int columns, inputOffset, inputStride, weightOffset, outputOffset, outputStride;
    float epsilon;
} p;

shared float partial[TEAM];

void main() {
    int lane = int(gl_LocalInvocationID.x);
    int t = int(gl_WorkGroupID.x);
    int inBase = p.inputOffset + t * p.inputStride;
    // Four running sums per invocation keep the additions independent.
    vec4 sums = vec4(0.0);
    int c = lane;
    for (; c + 3 * TEAM < p.columns; c += 4 * TEAM) {
        vec4 x = vec4(inputs[inBase + c], inputs[inBase + c + TEAM], inputs[inBase + c + 2 * TEAM], inputs[inBase + c + 3 * TEAM]);
        sums = fma(x, x, sums);
    }
    for (; c < p.columns; c += TEAM) {
        float x = inputs[inBase + c];
        sums.x = fma(x, x, sums.x);
    }
    partial[lane] = (sums.x + sums.y) + (sums.z + sums.w);
    barrier();
    if (p.columns == 0) return;
    float total = 0.0;
    for (int j = 0; j < TEAM; j++) total += partial[j];
    float inverse = 1.0 / sqrt(total / float(p.columns) + p.epsilon);
    int outBase = p.outputOffset + t * p.outputStride;
    for (c = lane; c < p.columns; c += TEAM) {
        outputs[outBase + c] = inputs[inBase + c] * inverse * weights[p.weightOffset + c];
    }
}
