/*
 * linear (Op.linear): output[t][n] = weight[n] . input[t] + bias[n], a dense float32 layer (the routers).
 * Bindings:         0 input [T x K], 1 weight [N x K], 2 bias [1 x N] (bound to input when absent), 3 output [T x N]
 * Push constants:   0 T, 1 K, 2 N, 3 inputOffset, 4 inputStride, 5 weightOffset, 6 weightStride,
 *                   7 biasOffset (-1: no bias), 8 outputOffset, 9 outputStride
 * Work-groups:      (ceil(N / QTALE_WG), T); invocation x computes output[y][x].
 * Must match Reference+Matmul.swift linear (NMSE 1e-11).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Input { float inputs[]; };
layout(set = 0, binding = 1) readonly buffer Weight { float weight[]; };
layout(set = 0, binding = 2) readonly buffer Bias { float bias[]; };
layout(set = 0, binding = 3) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int tokens, k, n, inputOffset, inputStride, weightOffset, weightStride, biasOffset, outputOffset, outputStride;
} p;

void main() {
    int column = int(gl_GlobalInvocationID.x), t = int(gl_WorkGroupID.y);
    if (column >= p.n || t >= p.tokens) return;
    int x = p.inputOffset + t * p.inputStride, w = p.weightOffset + column * p.weightStride;
    float sum = 0.0;
    for (int i = 0; i < p.k; ++i) sum = fma(weight[w + i], inputs[x + i], sum);
    if (p.biasOffset >= 0) sum += bias[p.biasOffset + column];
    outputs[p.outputOffset + t * p.outputStride + column] = sum;
}
