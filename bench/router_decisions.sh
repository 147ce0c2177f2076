#!/usr/bin/env bash
# Routed decode with decisions on the host against decisions on the engine (issue 4 §2), on every
# engine, with the trained QTALE routers at the θ set for Ω = 0.6, plus the dense model for scale.
# Writes bench/results/router-decisions-<engine>.json and prints the tables.
#
#   bash bench/router_decisions.sh [ROUTERS] [THETA]
set -euo pipefail
cd "$(dirname "$0")/.."
routers=${1:-/tmp/routers-final/qtale.safetensors}
theta=${2:-0.5625}
qtale=.build/release/qtale
[ -x "$qtale" ] || swift build -c release --product qtale >&2
mkdir -p bench/results
for engine in cpu opencl vulkan; do
    "$qtale" bench generate -m smollm2 --backend "$engine" --threads 2 --prompt-tokens 32 --decode-tokens 64 --repeats 5 \
        --json "bench/results/dense-$engine.json" 2>/dev/null | grep -E "^(engine|decode)"
    "$qtale" bench generate -m smollm2 --backend "$engine" --threads 2 --prompt-tokens 32 --decode-tokens 64 --repeats 5 \
        --routers "$routers" --threshold "$theta" --router-decisions host device \
        --json "bench/results/router-decisions-$engine.json" 2>/dev/null
done
