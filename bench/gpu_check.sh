#!/usr/bin/env bash
# The conformance suite and the kernel bench on a GPU host that has a driver but no Swift toolchain.
#
#   swift build -c release --static-swift-stdlib --product qtale --scratch-path .build-static
#   copy .build-static/release/qtale to the host, then there:  QTALE=./qtale bash bench/gpu_check.sh OUTDIR
#
# Writes OUTDIR/{log.txt, conformance-ENGINE-DEVICE.json, kernels-ENGINE-DEVICE.json} for each device of each GPU
# engine available there, and exits nonzero if a conformance case fails.
set -u -o pipefail
qtale=${QTALE:-qtale}
out=${1:-bench/results/gpu}
mkdir -p "$out"
status=0
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    grep -m1 'model name' /proc/cpuinfo
    "$qtale" backends
} 2>&1 | tee "$out/log.txt"
# "engine device" for every device of every available GPU engine.
targets=$("$qtale" backends --json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["available"] and e["name"] in ("vulkan", "opencl"):
        for i in range(len(e["devices"])): print(e["name"], i)')
while read -r engine device; do
    [ -n "$engine" ] || continue
    tag="$engine-$device"
    "$qtale" conformance --backend "$engine" --device "$device" --json "$out/conformance-$tag.json" 2>&1 \
        | grep -v '^conformance \[' | tee -a "$out/log.txt" || status=1
    "$qtale" bench kernels --backend "$engine" --device "$device" --json "$out/kernels-$tag.json" 2>&1 \
        | tee -a "$out/log.txt" || status=1
done <<< "$targets"
exit $status
