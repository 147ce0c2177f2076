#!/usr/bin/env bash
# The router-training recipe of the closing notes: SmolLM2-135M-Instruct, routers only (no LoRA),
# target execution ratio Ω = 0.6, once as D-LLM (λ2 = 0) and once as QTALE (λ2 = 0.1), on ARC-Easy train.
# Both runs go in parallel, one thread each. Then the achieved execution ratio at θ = 0.5 is measured
# on held-in validation text (ARC-Easy dev questions, scored as `qtale eval` does).
#
#   bash bench/train_routers.sh [OUT_DIR] [EXAMPLES] [STEPS]
# Environment: LR (default 1e-3), LAMBDA_RATE (5), EPOCHS (1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-bench/results/routers}
examples=${2:-900}
steps=${3:-0}
q=${QTALE:-.build/release/qtale}
data=../shared/data/arc_easy
mkdir -p "$out"
common=(-m smollm2 --threads 1 --data "arc_easy:$data/ARC-Easy-Train.jsonl" --limit "$examples" --target-ratio 0.6
        --lambda-rate "${LAMBDA_RATE:-5}" --lr "${LR:-1e-3}" --epochs "${EPOCHS:-1}" --batch-tokens 512 --seed 0)
[ "$steps" != 0 ] && common+=(--max-steps "$steps")
for run in dllm:0 qtale:0.1; do
  name=${run%%:*}; lambda=${run##*:}
  "$q" train-routers "${common[@]}" --lambda-entropy "$lambda" --checkpoint "$out/$name.ckpt.safetensors" --resume \
       --diagnostics "$out/$name.diagnostics.json" --log-json "$out/$name.steps.jsonl" -o "$out/$name.safetensors" \
       > "$out/$name.log" 2>&1 &
done
wait
for name in dllm qtale; do
  "$q" eval -m smollm2 --threads 2 --routers "$out/$name.safetensors" --threshold 0.5 --task arc_easy \
       --data "$data/ARC-Easy-Dev.jsonl" --limit 200 --no-progress --json "$out/$name.eval-dev.json"
done
