/*
 * rope, float32 fallback for devices without shaderFloat64 (see rope.comp for the contract: same
 * bindings, push constants and work-groups; must match ReferenceEngine.rope).
 *
 * Note: the angle position * base^(-2i/ropeDims) is computed in float32, so at positions in the
 * thousands it is off by ~1e-4 rad and the conformance bound (NMSE 1e-11 against the float64
 * reference) is not met; results are still fine for inference (float32 engines elsewhere do the same).
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) buffer Data { float data[]; };
layout(set = 0, binding = 1) readonly buffer Positions { int positions[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, headDim, ropeDims, dataOffset, dataStride, positionsOffset;
    float base;
} p;

void main() {
    uint pair = gl_GlobalInvocationID.x;
    int t = int(gl_WorkGroupID.y);
    if (t >= p.rows || p.headDim <= 0 || p.ropeDims < 2) return;
    uint pairsPerHead = uint(p.ropeDims / 2);
    uint heads = uint(p.columns / p.headDim);
    if (pair >= heads * pairsPerHead) return;
    uint head = pair / pairsPerHead, i = pair % pairsPerHead;

    float frequency = exp2(-float(2u * i) / float(p.ropeDims) * log2(p.base));
    float angle = float(positions[p.positionsOffset + t]) * frequency;
    float s = sin(angle), c = cos(angle);
    int index = p.dataOffset + t * p.dataStride + int(head) * p.headDim + 2 * int(i);
    float x0 = data[index], x1 = data[index + 1];
    data[index] = x0 * c - x1 * s;
    data[index + 1] = x0 * s + x1 * c;
}
