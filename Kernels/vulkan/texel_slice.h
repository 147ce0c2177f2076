/*
 * Reading float buffers through uniform texel buffers of vec4 texels (R32G32B32A32_SFLOAT; why: see
 * VulkanBinding in Sources/QTaleVulkan/VulkanPipelines.swift). Offsets are in floats.
 */
#ifndef QTALE_TEXEL_SLICE_H
#define QTALE_TEXEL_SLICE_H

/* Elements e .. e+3: one fetch when e is a multiple of 4 (`aligned`: a specialization constant in the
   calling kernel, so the other path compiles away), else assembled from two neighbouring texels. */
vec4 qtale_slice(samplerBuffer b, int e, bool aligned) {
    if (aligned) return texelFetch(b, e >> 2);
    int t = e >> 2, shift = e & 3;
    vec4 x = texelFetch(b, t), y = texelFetch(b, min(t + 1, textureSize(b) - 1));
    return shift == 0 ? x : shift == 1 ? vec4(x.yzw, y.x) : shift == 2 ? vec4(x.zw, y.xy) : vec4(x.w, y.xyz);
}

/* Element e alone. */
float qtale_element(samplerBuffer b, int e) {
    return texelFetch(b, e >> 2)[e & 3];
}

#endif
