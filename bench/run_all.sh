#!/usr/bin/env bash
# Every benchmark of the closing notes, in one run: end to end against llama.cpp, each engine's
# generation and kernels, decode time against execution ratio, and routed decode with decisions on the
# host against the engine. Results land in bench/results/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
swift build -c release --product qtale >/dev/null
q=.build/release/qtale
out=bench/results
python3 bench/generate.py --backends cpu cpu-f32 cpu-int8 --json $out/generate-vs-llamacpp.json
for backend in cpu opencl vulkan; do
  echo "== $backend: generate"
  $q bench generate --backend $backend --threads 2 --json $out/generate-$backend.json 2>/dev/null
  echo "== $backend: decode against execution ratio"
  $q bench generate --backend $backend --threads 2 --exec-ratio 1 0.75 0.5 --json $out/layer-skip-$backend.json 2>/dev/null
  echo "== $backend: kernels"
  $q bench kernels --backend $backend --threads 2 --json $out/kernels-$backend.json
done
for backend in cpu-f32 cpu-int8; do
  echo "== $backend: kernels"
  $q bench kernels --backend $backend --threads 2 --json $out/kernels-$backend.json
done
echo "== routed decode: decisions on the host against the engine"
bash bench/router_decisions.sh
echo "== OpenCL decode against the CPU engine's, in interleaved pairs"
python3 bench/decode_ratio.py --backend opencl --pairs 10
