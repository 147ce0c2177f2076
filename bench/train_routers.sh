#!/usr/bin/env bash
# The router-training recipe of docs/router-training.md: SmolLM2-135M-Instruct, routers only (no LoRA),
# target execution ratio Ω = 0.6, once as D-LLM (λ2 = 0) and once as QTALE (λ2 = LAMBDA_ENTROPY), on the
# first EXAMPLES questions of ARC-Easy train. λ1 = 30 because this small model's cross-entropy resists
# skipping (λ1 = 5-10 stalled at ratio 0.72-0.75); λ2 = 3 is the largest of the sweep 0.1, 1, 3 whose
# training ratio still reaches Ω ± 0.03. Both runs go in parallel, one thread each (about 18 minutes
# on 2 cores). Then, on ARC-Easy dev (held-in validation text: the training distribution, unseen questions):
#   - the execution ratio and accuracy at θ = 0.5 (D-LLM's rule);
#   - θ set for Ω by `calibrate-threshold --target-ratio` on ARC-Easy train questions after the first
#     EXAMPLES (not trained on), and the ratio and accuracy that θ gives on the dev questions.
#
#   bash bench/train_routers.sh [OUT_DIR] [EXAMPLES] [STEPS]
# Environment: LR (default 3e-3), LAMBDA_RATE (30), LAMBDA_ENTROPY (3), EPOCHS (3), QTALE (the binary).
# A run whose routers file exists is kept; an interrupted one resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-bench/results/routers}
examples=${2:-900}
steps=${3:-0}
q=${QTALE:-.build/release/qtale}
data=../shared/data/arc_easy
omega=0.6
mkdir -p "$out"
common=(-m smollm2 --threads 1 --data "arc_easy:$data/ARC-Easy-Train.jsonl" --limit "$examples" --target-ratio "$omega"
        --lambda-rate "${LAMBDA_RATE:-30}" --lr "${LR:-3e-3}" --epochs "${EPOCHS:-3}" --batch-tokens 512 --seed 0)
[ "$steps" != 0 ] && common+=(--max-steps "$steps")
for run in dllm:0 "qtale:${LAMBDA_ENTROPY:-3}"; do
  name=${run%%:*}; lambda=${run##*:}
  [ -f "$out/$name.safetensors" ] && continue
  "$q" train-routers "${common[@]}" --lambda-entropy "$lambda" --checkpoint "$out/$name.ckpt.safetensors" --resume \
       --diagnostics "$out/$name.diagnostics.json" --log-json "$out/$name.steps.jsonl" -o "$out/$name.safetensors" \
       > "$out/$name.log" 2>&1 &
done
wait
heldout="$out/arc_easy-heldout-train.jsonl"
tail -n +"$((examples + 1))" "$data/ARC-Easy-Train.jsonl" > "$heldout"
for name in dllm qtale; do
  routers=(-m smollm2 --threads 2 --routers "$out/$name.safetensors")
  "$q" eval "${routers[@]}" --threshold 0.5 --task arc_easy --data "$data/ARC-Easy-Dev.jsonl" \
       --no-progress --json "$out/$name.eval-dev.json"
  "$q" calibrate-threshold "${routers[@]}" --target-ratio "$omega" --ratio-tolerance 0.01 --task arc_easy \
       --data "$heldout" --limit 200 --no-progress --json "$out/$name.theta-for-ratio.json"
  theta=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["threshold"])' "$out/$name.theta-for-ratio.json")
  "$q" eval "${routers[@]}" --threshold "$theta" --task arc_easy --data "$data/ARC-Easy-Dev.jsonl" \
       --no-progress --json "$out/$name.eval-dev-theta.json"
done
