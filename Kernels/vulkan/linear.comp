/*
 * linear (Op.linear): output[t][n] = weight[n] . input[t] + bias[n], a dense float32 layer (the routers).
 * Bindings:         0 input [T x K], 1 weight [N x K]: uniform texel buffers, R32G32B32A32_SFLOAT
 *                   (texel_slice.h); 2 bias [1 x N] (bound to input when absent), 3 output [T x N]:
 *                   storage buffers, float32
 * Push constants:   0 T, 1 K, 2 N, 3 inputOffset, 4 inputStride, 5 weightOffset, 6 weightStride,
 *                   7 biasOffset (-1: no bias), 8 outputOffset, 9 outputStride
 * Work-groups:      (ceil(N / QTALE_WG), T) of QTALE_WG invocations; invocation x computes output[y][x],
 *                   four weights and four inputs per fetch (the input texel is the same for every
 *                   invocation, so llvmpipe fetches it once per SIMD vector).
 * Specialization constants: 0 QTALE_WG; 1 the work-group size (QTALE_WG); 2 ALIGNED (K and the offsets
 * and row strides of input and weight are multiples of 4; else slices are assembled from two texels).
 * Must match Reference+Matmul.swift linear (NMSE 1e-11).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"
#include "vulkan/texel_slice.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 1) const uint SIZE = 64;
layout(constant_id = 2) const bool ALIGNED = true;
layout(local_size_x_id = 1) in;

layout(set = 0, binding = 0) uniform samplerBuffer inputs;
layout(set = 0, binding = 1) uniform samplerBuffer weights;
layout(set = 0, binding = 2) readonly buffer Bias { float bias[]; };
layout(set = 0, binding = 3) buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int tokens, k, n, inputOffset, inputStride, weightOffset, weightStride, biasOffset, outputOffset, outputStride;
} p;

void main() {
    int column = int(gl_WorkGroupID.x * SIZE + gl_LocalInvocationID.x), t = int(gl_WorkGroupID.y);
    if (column >= p.n || t >= p.tokens) return;
    int x = p.inputOffset + t * p.inputStride, w = p.weightOffset + column * p.weightStride;
    int whole = p.k & ~3;
    vec4 acc = vec4(0.0);
    for (int i = 0; i < whole; i += 4) acc = fma(qtale_slice(weights, w + i, ALIGNED), qtale_slice(inputs, x + i, ALIGNED), acc);
    float sum = (acc.x + acc.y) + (acc.z + acc.w);
    for (int i = whole; i < p.k; ++i) sum = fma(qtale_element(weights, w + i), qtale_element(inputs, x + i), sum);
    if (p.biasOffset >= 0) sum += bias[p.biasOffset + column];
    outputs[p.outputOffset + t * p.outputStride + column] = sum;
}
