/*
 * matmul_mat: output[t][n] = sum_k input[t][k] * dequantize(weight)[n][k], several tokens (prefill);
 * output[t][n] += that sum when accumulate is 1.
 * Must match ReferenceEngine.matmul (float32 accumulation here).
 *
 * Bindings (set 0), whole engine buffers:
 *   0 input    uniform texel buffer, R32G32B32A32_SFLOAT
 *   1 codes    uniform texel buffer, R32G32B32A32_UINT
 *   2 scales   uniform texel buffer, R32_UINT (two binary16 per texel)
 *   3 offsets  uniform texel buffer, R32_UINT
 *   4 output   storage buffer, float32
 * (texel buffers: see matmul_vec.comp).
 * Push constants: bits, groupSize, K, N, codeBytesPerRow, groupsPerRow, T, inputOffset,
 *                 inputStride, outputOffset, outputStride, accumulate, firstRow (the weight
 *                 buffers' row that is row 0 of the matrix; row indices below are buffer rows).
 * Work-groups:    (ceil(N / KernelPlanner.matmulTileRows), ceil(T / KernelPlanner.matmulTileTokens)):
 *                 a tile of TILE_ROWS rows × TILE_TOKENS tokens, worked by LANES = TILE_ROWS / RPI
 *                 invocations (the work-group size; see matmul_vec.comp). Invocation i owns RPI rows
 *                 (slot r: row tile.x * TILE_ROWS + i + r * LANES) and all the tile's tokens, taken
 *                 PASS_TOKENS at a time: per pack of 32 codes it fetches the pass's inputs (the same
 *                 for every invocation), then decodes one row's codes at a time and accumulates that
 *                 row for every token of the pass. (Decoding every row first and then walking the
 *                 tokens is 12-15% slower on llvmpipe: the decoded codes of all rows, 256 floats,
 *                 no longer fit in registers, while one row's 32 codes do and the inputs stay in
 *                 memory operands.) Tokens past T and rows past N are computed on clamped indices
 *                 and not written.
 * Specialization constants: 0 QTALE_WG (unused); 1 RPI, rows per invocation (1, 2, 4 or 8; 8 on CPU
 * devices, where one group of 8 invocations then fetches each input once for the whole tile); 2 BITS;
 * 3 ALIGNED (inputOffset and inputStride multiples of 4); 4 PARTIAL (K % 32 != 0); 5 LANES, the
 * work-group size; 6 TILE_ROWS (= LANES * RPI = KernelPlanner.matmulTileRows). (Fetching the scales of two
 * packs at once, as matmul_vec does, makes this loop slower on llvmpipe: it doubles the body.) See matmul_vec.comp
 * for why variants are compiled rather than branched, and arrays only indexed by constants.
 *
 * Codes of 4 and 8 bits are used masked but not shifted (a code at bit 8j is worth c * 2^8j), with the
 * inputs scaled by 2^-8j to match: exact, as both are powers of two.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 5) const uint LANES = 64;
layout(constant_id = 6) const uint TILE_ROWS = 64;
layout(local_size_x_id = 5) in;
layout(constant_id = 1) const int RPI = 1;
layout(constant_id = 2) const int BITS = 4;
layout(constant_id = 3) const bool ALIGNED = true;
layout(constant_id = 4) const bool PARTIAL = false;

const int TILE_TOKENS = 8;   // KernelPlanner.matmulTileTokens
const int PASS_TOKENS = 4;   // tokens accumulated per pass over the codes
const int MAX_RPI = 8;

layout(set = 0, binding = 0) uniform samplerBuffer inputs;
layout(set = 0, binding = 1) uniform usamplerBuffer codes;
layout(set = 0, binding = 2) uniform usamplerBuffer scales;
layout(set = 0, binding = 3) uniform usamplerBuffer offsets;
layout(set = 0, binding = 4) restrict buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int bits, groupSize, K, N, codeBytesPerRow, groupsPerRow, T, inputOffset, inputStride, outputOffset, outputStride, accumulate, firstRow;
} p;

int rows[MAX_RPI];                 // the invocation's rows (clamped into range), as rows of the buffers
vec4 cw[8];                        // decoded codes of the current row's pack: cw[i] pairs with xs[8t + i]
float scale, offset;               // of the current row's group
vec4 x[8];                         // one token's 32 inputs of the pack
vec4 xs[8 * PASS_TOKENS];          // each token's x scaled by the place values of the codes in cw
float xsum[PASS_TOKENS];           // each token's sum of x
float acc[MAX_RPI * PASS_TOKENS];  // acc[PASS_TOKENS * r + t]

/* Place values of the codes in cw[i] (their inverse scales the inputs). */
vec4 places(int i) {
    if (BITS == 4) return i < 4 ? vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0)
                                : vec4(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 1048576.0, 1.0);
    if (BITS == 8) return vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0);
    return vec4(1.0);
}

float code(uint masked) { return float(int(masked)); }   // values below 2^31: a signed conversion

/* Codes of 3 bits: byte j (< 8) holds the low two bits of c[j], c[j+8], c[j+16], c[j+24]; word 2 bit i is
 * bit 2 of c[i]. Codes c0 .. c0+3 (c0 = 8q + 4h) have their low bits in the bytes of `low` at bit 2q. */
vec4 codes3(uint low, uint q, uint high, uint c0) {
    uint s = 2u * q;
    return vec4(code(((low >> s) & 3u) | (((high >> c0) & 1u) << 2)),
                code(((low >> (s + 8u)) & 3u) | (((high >> (c0 + 1u)) & 1u) << 2)),
                code(((low >> (s + 16u)) & 3u) | (((high >> (c0 + 2u)) & 1u) << 2)),
                code(((low >> (s + 24u)) & 3u) | (((high >> (c0 + 3u)) & 1u) << 2)));
}

uint pick(uvec4 a, uvec4 b, int i) {   // word i (0..6) of the eight words a, b
    return i == 0 ? a.x : i == 1 ? a.y : i == 2 ? a.z : i == 3 ? a.w : i == 4 ? b.x : i == 5 ? b.y : b.z;
}

float halfAt(usamplerBuffer b, int i) {   // binary16 number i (texels hold two)
    vec2 pair = unpackHalf2x16(texelFetch(b, i >> 1).x);
    return (i & 1) == 0 ? pair.x : pair.y;
}

/* Decodes pack pk of slot r's row into cw and fetches its scale and offset (group g of the row). */
void decode(int r, int pk, int g) {
    int row = rows[r];
    int i = row * p.groupsPerRow + g;
    scale = halfAt(scales, i);
    offset = halfAt(offsets, i);
    if (BITS == 4) {
        // byte j of a pack holds c[j] (low nibble) and c[j + 16] (high nibble)
        uvec4 w = texelFetch(codes, row * (p.codeBytesPerRow / 16) + pk);
        cw[0] = vec4(code(w.x & 0xFu), code(w.x & 0xF00u), code(w.x & 0xF0000u), code(w.x & 0xF000000u));
        cw[1] = vec4(code(w.y & 0xFu), code(w.y & 0xF00u), code(w.y & 0xF0000u), code(w.y & 0xF000000u));
        cw[2] = vec4(code(w.z & 0xFu), code(w.z & 0xF00u), code(w.z & 0xF0000u), code(w.z & 0xF000000u));
        cw[3] = vec4(code(w.w & 0xFu), code(w.w & 0xF00u), code(w.w & 0xF0000u), code(w.w & 0xF000000u));
        cw[4] = vec4(code(w.x & 0xF0u), code(w.x & 0xF000u), code(w.x & 0xF00000u), code(w.x >> 28));
        cw[5] = vec4(code(w.y & 0xF0u), code(w.y & 0xF000u), code(w.y & 0xF00000u), code(w.y >> 28));
        cw[6] = vec4(code(w.z & 0xF0u), code(w.z & 0xF000u), code(w.z & 0xF00000u), code(w.z >> 28));
        cw[7] = vec4(code(w.w & 0xF0u), code(w.w & 0xF000u), code(w.w & 0xF00000u), code(w.w >> 28));
    } else if (BITS == 8) {
        // byte j holds c[j]
        int t = row * (p.codeBytesPerRow / 16) + 2 * pk;
        uvec4 a = texelFetch(codes, t), b = texelFetch(codes, t + 1);
        cw[0] = vec4(code(a.x & 0xFFu), code(a.x & 0xFF00u), code(a.x & 0xFF0000u), code(a.x >> 24));
        cw[1] = vec4(code(a.y & 0xFFu), code(a.y & 0xFF00u), code(a.y & 0xFF0000u), code(a.y >> 24));
        cw[2] = vec4(code(a.z & 0xFFu), code(a.z & 0xFF00u), code(a.z & 0xFF0000u), code(a.z >> 24));
        cw[3] = vec4(code(a.w & 0xFFu), code(a.w & 0xFF00u), code(a.w & 0xFF0000u), code(a.w >> 24));
        cw[4] = vec4(code(b.x & 0xFFu), code(b.x & 0xFF00u), code(b.x & 0xFF0000u), code(b.x >> 24));
        cw[5] = vec4(code(b.y & 0xFFu), code(b.y & 0xFF00u), code(b.y & 0xFF0000u), code(b.y >> 24));
        cw[6] = vec4(code(b.z & 0xFFu), code(b.z & 0xFF00u), code(b.z & 0xFF0000u), code(b.z >> 24));
        cw[7] = vec4(code(b.w & 0xFFu), code(b.w & 0xFF00u), code(b.w & 0xFF0000u), code(b.w >> 24));
    } else {
        // A 12-byte pack may straddle two texels; the second is fetched only when it exists.
        int word = row * (p.codeBytesPerRow / 4) + 3 * pk, t = word >> 2, s = word & 3;
        int lastTexel = ((p.firstRow + p.N) * p.codeBytesPerRow - 1) / 16;
        uvec4 a = texelFetch(codes, t), b = texelFetch(codes, min(t + 1, lastTexel));
        uint w0 = pick(a, b, s), w1 = pick(a, b, s + 1), w2 = pick(a, b, s + 2);
        cw[0] = codes3(w0, 0u, w2, 0u);  cw[1] = codes3(w1, 0u, w2, 4u);
        cw[2] = codes3(w0, 1u, w2, 8u);  cw[3] = codes3(w1, 1u, w2, 12u);
        cw[4] = codes3(w0, 2u, w2, 16u); cw[5] = codes3(w1, 2u, w2, 20u);
        cw[6] = codes3(w0, 3u, w2, 24u); cw[7] = codes3(w1, 3u, w2, 28u);
    }
}

/* Four inputs starting `shift` (0..3) elements into texel a, continuing into texel b. */
vec4 funnel(vec4 a, vec4 b, int shift) {
    return shift == 0 ? a : shift == 1 ? vec4(a.yzw, b.x) : shift == 2 ? vec4(a.zw, b.xy) : vec4(a.w, b.xyz);
}

/* Zeroes the inputs of x[i] at or past `valid`. */
vec4 clip(vec4 v, int i, int valid) {
    return vec4(4 * i < valid ? v.x : 0.0, 4 * i + 1 < valid ? v.y : 0.0, 4 * i + 2 < valid ? v.z : 0.0, 4 * i + 3 < valid ? v.w : 0.0);
}

/* Token `token`'s inputs of pack pk into x, and into xs and xsum at `slot`. */
void loadInputs(int slot, int token, int pk, bool tail) {
    int first = p.inputOffset + token * p.inputStride + pk * 32;
    int t = first >> 2;
    if (ALIGNED && !tail) {
        x[0] = texelFetch(inputs, t);     x[1] = texelFetch(inputs, t + 1);
        x[2] = texelFetch(inputs, t + 2); x[3] = texelFetch(inputs, t + 3);
        x[4] = texelFetch(inputs, t + 4); x[5] = texelFetch(inputs, t + 5);
        x[6] = texelFetch(inputs, t + 6); x[7] = texelFetch(inputs, t + 7);
    } else {
        // Any alignment, `valid` inputs in range: fetch only texels holding them, zero the rest.
        int valid = min(32, p.K - pk * 32), shift = first & 3, last = (first + valid - 1) >> 2;
        vec4 v0 = texelFetch(inputs, t);
        vec4 v1 = t + 1 <= last ? texelFetch(inputs, t + 1) : vec4(0.0);
        vec4 v2 = t + 2 <= last ? texelFetch(inputs, t + 2) : vec4(0.0);
        vec4 v3 = t + 3 <= last ? texelFetch(inputs, t + 3) : vec4(0.0);
        vec4 v4 = t + 4 <= last ? texelFetch(inputs, t + 4) : vec4(0.0);
        vec4 v5 = t + 5 <= last ? texelFetch(inputs, t + 5) : vec4(0.0);
        vec4 v6 = t + 6 <= last ? texelFetch(inputs, t + 6) : vec4(0.0);
        vec4 v7 = t + 7 <= last ? texelFetch(inputs, t + 7) : vec4(0.0);
        vec4 v8 = t + 8 <= last ? texelFetch(inputs, t + 8) : vec4(0.0);
        x[0] = clip(funnel(v0, v1, shift), 0, valid); x[1] = clip(funnel(v1, v2, shift), 1, valid);
        x[2] = clip(funnel(v2, v3, shift), 2, valid); x[3] = clip(funnel(v3, v4, shift), 3, valid);
        x[4] = clip(funnel(v4, v5, shift), 4, valid); x[5] = clip(funnel(v5, v6, shift), 5, valid);
        x[6] = clip(funnel(v6, v7, shift), 6, valid); x[7] = clip(funnel(v7, v8, shift), 7, valid);
    }
    vec4 s = (x[0] + x[1]) + (x[2] + x[3]) + (x[4] + x[5]) + (x[6] + x[7]);
    xsum[slot] = (s.x + s.y) + (s.z + s.w);
    int at = 8 * slot;
    xs[at] = x[0] * places(0);     xs[at + 1] = x[1] * places(1); xs[at + 2] = x[2] * places(2); xs[at + 3] = x[3] * places(3);
    xs[at + 4] = x[4] * places(4); xs[at + 5] = x[5] * places(5); xs[at + 6] = x[6] * places(6); xs[at + 7] = x[7] * places(7);
}

float dot4x(vec4 a, vec4 b) { return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, a.x * b.x))); }

/* acc[r][t] += scale * dot(x, codes) + offset * sum(x) for slot r (decoded in cw) and the pass's token t. */
void accumulate(int r, int t) {
    float d = ((dot4x(xs[8 * t], cw[0]) + dot4x(xs[8 * t + 1], cw[1])) + (dot4x(xs[8 * t + 2], cw[2]) + dot4x(xs[8 * t + 3], cw[3])))
            + ((dot4x(xs[8 * t + 4], cw[4]) + dot4x(xs[8 * t + 5], cw[5])) + (dot4x(xs[8 * t + 6], cw[6]) + dot4x(xs[8 * t + 7], cw[7])));
    acc[PASS_TOKENS * r + t] += fma(scale, d, offset * xsum[t]);
}

void row(int r, int pk, int g) {   // PASS_TOKENS = 4
    decode(r, pk, g);
    accumulate(r, 0); accumulate(r, 1); accumulate(r, 2); accumulate(r, 3);
}

void pack(int pk, int g, int t0, bool tail) {
    loadInputs(0, min(t0, p.T - 1), pk, tail); loadInputs(1, min(t0 + 1, p.T - 1), pk, tail);
    loadInputs(2, min(t0 + 2, p.T - 1), pk, tail); loadInputs(3, min(t0 + 3, p.T - 1), pk, tail);
    row(0, pk, g);
    if (RPI > 1) row(1, pk, g);
    if (RPI > 2) { row(2, pk, g); row(3, pk, g); }
    if (RPI > 4) { row(4, pk, g); row(5, pk, g); row(6, pk, g); row(7, pk, g); }
}

void store(int r, int t0, uint n) {
    if (n >= uint(p.N)) return;
    int o = p.outputOffset + int(n);
    for (int t = 0; t < PASS_TOKENS; t++) {
        if (t0 + t < p.T) {
            int i = o + (t0 + t) * p.outputStride;
            outputs[i] = p.accumulate != 0 ? outputs[i] + acc[PASS_TOKENS * r + t] : acc[PASS_TOKENS * r + t];
        }
    }
}

void main() {
    const uint ACTIVE = LANES;
    uint lid = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * TILE_ROWS + lid;
    for (int r = 0; r < MAX_RPI; r++) {
        uint n = base + uint(r) * ACTIVE;
        rows[r] = p.firstRow + (n < uint(p.N) ? int(n) : 0);   // a row of the weight buffers
    }
    int packsPerGroup = p.groupSize / 32, fullPacks = p.K / 32;
    for (int t0 = int(gl_WorkGroupID.y) * TILE_TOKENS; t0 < min(p.T, int(gl_WorkGroupID.y + 1u) * TILE_TOKENS); t0 += PASS_TOKENS) {
        for (int i = 0; i < MAX_RPI * PASS_TOKENS; i++) acc[i] = 0.0;
        int g = 0, inGroup = 0;
        for (int pk = 0; pk < fullPacks; pk++) {
            pack(pk, g, t0, false);
            inGroup++;
            g = inGroup == packsPerGroup ? g + 1 : g;
            inGroup = inGroup == packsPerGroup ? 0 : inGroup;
        }
        if (PARTIAL) pack(fullPacks, fullPacks * 32 / p.groupSize, t0, true);

        store(0, t0, base);
        if (RPI > 1) store(1, t0, base + ACTIVE);
        if (RPI > 2) { store(2, t0, base + 2u * ACTIVE); store(3, t0, base + 3u * ACTIVE); }
        if (RPI > 4) {
            store(4, t0, base + 4u * ACTIVE); store(5, t0, base + 5u * ACTIVE);
            store(6, t0, base + 6u * ACTIVE); store(7, t0, base + 7u * ACTIVE);
        }
    }
}
