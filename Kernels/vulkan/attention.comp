/*
 * attention: causal grouped-query attention of T queries over S keys, one work-group per
 * (head, query), or per (head, TEAM queries).                  (must match ReferenceEngine.attention)
 *
 *   output[t][h] = sum_s softmax_s(q[t][h] . k[s][h'] / sqrt(headDim)) v[s][h'],  h' = h / (heads / kvHeads)
 *
 * over the keys s with keyPos[s] <= queryPos[t] (keyPositionsOffset == -1: keyPos[s] = s, so only
 * keys s <= queryPos[t] are visited); a query that sees no key writes zeros. float32 throughout.
 *
 * Bindings (set 0), whole engine buffers:
 *   0 query, 1 keys, 2 values   uniform texel buffers, R32G32B32A32_SFLOAT (four floats per texel)
 *   3 queryPositions            storage buffer, int32
 *   4 keyPositions              storage buffer, int32 (bound to queryPositions when unused)
 *   5 output                    storage buffer, float32
 * Push constants: T, S, heads, kvHeads, headDim, queryOffset, queryStride, keysOffset, keysStride,
 *                 valuesOffset, valuesStride, queryPositionsOffset, keyPositionsOffset (-1: key s has
 *                 position s), outputOffset, outputStride.
 * Work-groups:    (heads, T), of TEAM invocations each (not QTALE_WG: the grid does not depend on
 *                 it, and on llvmpipe idle invocations still run every instruction outside loops, so
 *                 a 64-wide group with 8 busy lanes would pay eight times the fixed costs).
 *                 Keys are fetched as whole texels (a quarter of the fetches of single floats).
 *   Split keys (QUERY_LANES false): group (h, t) does query t. Invocation j runs an online softmax
 *                 over keys j, j + TEAM, ... (running maximum, denominator and a headDim-long sum of
 *                 values), then the TEAM partial results are merged in shared memory and invocation j
 *                 writes channels 4i .. 4i+3 for i = j, j + TEAM, ... No barrier inside the key loop.
 *   Query lanes (QUERY_LANES true, for many queries on CPU devices): group (h, t) with t a multiple
 *                 of TEAM does queries t .. t + TEAM - 1, invocation j query t + j over every key, and
 *                 writes that query's output; the other groups return at once. Nothing is merged:
 *                 on llvmpipe shared memory and subgroup operations are per-lane loops, and the merge
 *                 cost as much as the keys of a 128-token prefill. The keys an invocation fetches are
 *                 the same for the whole group, as the split-keys groups' fetches were distinct, so
 *                 a query-key pair costs the same fetches either way.
 * Specialization constants: 0 QTALE_WG (unused); 1 TEAM, the work-group size (the engine uses the
 * device's subgroup size, so a group is one SIMD vector on llvmpipe, capped so that the merge fits in
 * 16 KiB of shared memory); 2 DIM4 = ceil(headDim / 4) (1..64, so headDim <= 256); 3 ALIGNED: headDim
 * and every offset and stride of query, keys and values are multiples of 4 (else each 4-channel slice
 * is assembled from two texels); 4 QUERY_LANES (above). See matmul_vec.comp for why these are compiled
 * variants rather than branches.
 */
#version 450
#extension GL_GOOGLE_include_directive : require
#include "quant_layout.h"
#include "vulkan/texel_slice.h"

layout(constant_id = 0) const uint QTALE_WG = 64;
layout(constant_id = 1) const int TEAM = 8;
layout(local_size_x_id = 1) in;
layout(constant_id = 2) const int DIM4 = 16;
layout(constant_id = 3) const bool ALIGNED = true;
layout(constant_id = 4) const bool QUERY_LANES = false;

const int MAX_DIM4 = 64;

layout(set = 0, binding = 0) uniform samplerBuffer query;
layout(set = 0, binding = 1) uniform samplerBuffer keys;
layout(set = 0, binding = 2) uniform samplerBuffer values;
layout(set = 0, binding = 3) restrict readonly buffer QueryPositions { int queryPositions[]; };
layout(set = 0, binding = 4) restrict readonly buffer KeyPositions { int keyPositions[]; };
layout(set = 0, binding = 5) restrict writeonly buffer Output { float outputs[]; };

layout(push_constant) uniform Parameters {
    int T, S, heads, kvHeads, headDim, queryOffset, queryStride, keysOffset, keysStride,
        valuesOffset, valuesStride, queryPositionsOffset, keyPositionsOffset, outputOffset, outputStride;
} p;

shared float teamMax[TEAM];
shared float teamSum[TEAM];
shared vec4 teamAcc[TEAM * DIM4];

/* Channels 4i .. 4i+3 of the vector starting at element `first` (channels past headDim are not
 * masked here). Unaligned: assembled from two texels, the second clamped into the buffer. */
vec4 slice(samplerBuffer b, int first, int i) { return qtale_slice(b, first + 4 * i, ALIGNED); }

int D, kvHead;
vec4 q[MAX_DIM4];                  // the query, scaled by 1/sqrt(headDim), zero past headDim
float runningMax, denominator;     // the online softmax
vec4 acc[MAX_DIM4];

/* Loads query t of head h into q and resets the softmax. */
void begin(int h, int t) {
    float scale = 1.0 / sqrt(float(D));
    int qFirst = p.queryOffset + t * p.queryStride + h * D;
    for (int i = 0; i < DIM4; i++) {
        vec4 v = slice(query, qFirst, i) * scale;
        if (!ALIGNED) v = mix(vec4(0.0), v, lessThan(ivec4(4 * i) + ivec4(0, 1, 2, 3), ivec4(D)));
        q[i] = v;
    }
    runningMax = -1.0 / 0.0;
    denominator = 0.0;
    for (int i = 0; i < DIM4; i++) acc[i] = vec4(0.0);
}

/* One step of the online softmax: key s, if visible to the query. */
void visit(int s, bool visible) {
    int kFirst = p.keysOffset + s * p.keysStride + kvHead * D;
    vec4 d4 = vec4(0.0);
    for (int i = 0; i < DIM4; i++) d4 = fma(q[i], slice(keys, kFirst, i), d4);
    float score = (d4.x + d4.y) + (d4.z + d4.w);
    float newMax = visible ? max(runningMax, score) : runningMax;
    // Rescaling of what came before: 1 when the maximum holds (also while no key was visible), 0 from -inf.
    float factor = runningMax == newMax ? 1.0 : runningMax > -1.0 / 0.0 ? exp(runningMax - newMax) : 0.0;
    float weight = visible ? exp(score - newMax) : 0.0;
    denominator = fma(denominator, factor, weight);
    int vFirst = p.valuesOffset + s * p.valuesStride + kvHead * D;
    for (int i = 0; i < DIM4; i++) acc[i] = fma(acc[i], vec4(factor), weight * slice(values, vFirst, i));
    runningMax = newMax;
}

/* Channels 4i .. 4i+3 of query t's output: sum / total, zeros when the query saw no key. */
void write(int t, int h, int i, vec4 sum, float total) {
    vec4 result = total > 0.0 ? sum / total : vec4(0.0);
    int o = p.outputOffset + t * p.outputStride + h * D, c = 4 * i;
    if (c < D) outputs[o + c] = result.x;
    if (c + 1 < D) outputs[o + c + 1] = result.y;
    if (c + 2 < D) outputs[o + c + 2] = result.z;
    if (c + 3 < D) outputs[o + c + 3] = result.w;
}

/* Keys s visible to the query at `position` are below this bound (with implicit positions key s sits
 * at position s, so keys past the query's position are never visible). */
int keyEnd(int position) { return p.keyPositionsOffset < 0 ? clamp(position + 1, 0, p.S) : p.S; }

bool isVisible(int s, int position) {
    return p.keyPositionsOffset < 0 || keyPositions[p.keyPositionsOffset + s] <= position;
}

void splitKeys(int h, int t, int lane) {
    begin(h, t);
    int queryPosition = queryPositions[p.queryPositionsOffset + t];
    for (int s = lane; s < keyEnd(queryPosition); s += TEAM) visit(s, isVisible(s, queryPosition));

    // Merge the team: rescale every partial result to the overall maximum, then sum.
    teamMax[lane] = runningMax;
    barrier();
    float overallMax = -1.0 / 0.0;
    for (int j = 0; j < TEAM; j++) overallMax = max(overallMax, teamMax[j]);
    float factor = runningMax > -1.0 / 0.0 ? exp(runningMax - overallMax) : 0.0;
    teamSum[lane] = denominator * factor;
    for (int i = 0; i < DIM4; i++) teamAcc[lane * DIM4 + i] = acc[i] * factor;
    barrier();
    float total = 0.0;
    for (int j = 0; j < TEAM; j++) total += teamSum[j];
    for (int i = lane; i < DIM4; i += TEAM) {
        vec4 sum = vec4(0.0);
        for (int j = 0; j < TEAM; j++) sum += teamAcc[j * DIM4 + i];
        write(t, h, i, sum, total);
    }
}

void queryLanes(int h, int t0, int lane) {
    if (t0 % TEAM != 0) return;   // the same for the whole group
    int t = min(t0 + lane, p.T - 1);
    begin(h, t);
    int queryPosition = queryPositions[p.queryPositionsOffset + t];
    for (int s = 0; s < keyEnd(queryPosition); s++) visit(s, isVisible(s, queryPosition));
    if (t0 + lane < p.T) for (int i = 0; i < DIM4; i++) write(t, h, i, acc[i], denominator);
}

void main() {
    int h = int(gl_WorkGroupID.x), t = int(gl_WorkGroupID.y);
    int lane = int(gl_LocalInvocationID.x);
    if (t >= p.T || p.heads <= 0 || p.kvHeads <= 0) return;   // the same for the whole group
    D = p.headDim;
    kvHead = h / (p.heads / p.kvHeads);
    if (QUERY_LANES) queryLanes(h, t, lane); else splitKeys(h, t, lane);
}
