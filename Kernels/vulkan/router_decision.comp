/*
 * router_decision (Op.routerDecision): the layer-skip decision from router logits, on the device.
 * Bindings:         0 logits [T x 2] (skip, execute), float32; 1 decisions, int32 [1 x T]
 * Push constants:   0 T, 1 logitsOffset, 2 logitsStride, 3 decisionsOffset,
 *                   4 margin (float: log(theta / (1 - theta)), +-inf at the ends; RouterDecisionRule.swift)
 * Work-groups:      (ceil(T / QTALE_WG), 1); invocation t writes decisions[t] = execute - skip > margin.
 * Must match ReferenceEngine.encode(.routerDecision) exactly.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Logits { float logits[]; };
layout(set = 0, binding = 1) buffer Decisions { int decisions[]; };

layout(push_constant) uniform Parameters {
    int tokens, logitsOffset, logitsStride, decisionsOffset;
    float margin;
} p;

void main() {
    int t = int(gl_GlobalInvocationID.x);
    if (t >= p.tokens) return;
    int row = p.logitsOffset + t * p.logitsStride;
    decisions[p.decisionsOffset + t] = logits[row + 1] - logits[row] > p.margin ? 1 : 0;
}
