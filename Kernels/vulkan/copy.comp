/*
 * copy: destination = source, same shape, 32-bit elements copied bit for bit; views may be strided
 * (writes K/V rows into the cache).                          (must match ReferenceEngine.copy)
 *
 * Bindings (set 0): 0 source, 1 destination (uint words).
 * Push constants:   rows, columns, sourceOffset, sourceStride, destinationOffset, destinationStride.
 * Work-groups:      (ceil(columns / QTALE_WG), rows); invocation x owns column x of row y.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(local_size_x_id = 0) in;

layout(set = 0, binding = 0) readonly buffer Source { uint source[]; };
layout(set = 0, binding = 1) writeonly buffer Destination { uint destination[]; };

layout(push_constant) uniform Parameters {
    int rows, columns, sourceOffset, sourceStride, destinationOffset, destinationStride;
} p;

void main() {
    int c = int(gl_GlobalInvocationID.x), r = int(gl_WorkGroupID.y);
    if (c >= p.columns || r >= p.rows) return;
    destination[p.destinationOffset + r * p.destinationStride + c] = source[p.sourceOffset + r * p.sourceStride + c];
}
