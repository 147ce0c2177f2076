#!/usr/bin/env python3
"""Checks `qtale eval` against an independent computation with llama.cpp (PyPI `llama-cpp-python`).

Same GGUF weights, same prompts, same scoring, written again from the task definitions rather than from
qtale's code: zero-shot lm-evaluation-harness prompts ("Question: {stem}\\nAnswer:" + " {choice}" for
ARC, "{stem}" + " {choice}" for OpenBookQA), lm-eval's `_encode_pair` tokenization (trailing context
whitespace moved onto the continuation; continuation tokens = tokens of context+continuation after the
context's count; no BOS, as SmolLM2's GGUF says add_bos_token = false and lm-eval's HF model adds none;
special tokens not parsed), and per choice the sum of float64 log-softmax over the continuation tokens,
each choice evaluated from scratch (no shared prefix, unlike qtale). acc = argmax is gold; acc_norm =
argmax of log-likelihood / len(choice) (characters) is gold.

By default llama.cpp runs the exact float32 dequantization of the GGUF qtale runs (the same weights,
made by scripts/make_goldens.py's dequantizer and cached in /tmp): llama.cpp's own Q4_1 kernels round
activations to 8 bits, which moves this small model's log-likelihoods by about 0.2 on average (up to 1.4)
and flips 2-3% of the predictions. --native runs llama.cpp's Q4_1 path on the file itself instead.
SmolLM2-135M-Instruct Q4_1, 2 threads, llama-cpp-python 0.3.36:

  split (n)        qtale acc / acc_norm   llama.cpp F32 copy     llama.cpp native Q4_1
  ARC-Easy dev 570   52.28 / 42.98          52.28 / 42.98          52.11 / 42.63
  OBQA dev.tsv 500   17.60 / 31.40          17.60 / 31.40          17.40 / 30.60
  (F32 copy: max |delta log-likelihood| 3.4e-5, no prediction differs)

  python3 bench/eval_check.py --task arc_easy --data ../shared/data/arc_easy/ARC-Easy-Dev.jsonl --run-qtale
  python3 bench/eval_check.py --task openbookqa --data ../shared/data/openbookqa/dev.tsv --limit 100 \\
      --qtale-json qtale_obqa.json --json llamacpp_obqa.json

Exits 1 when acc or acc_norm differ by more than --tolerance points (default 0.5).
"""
import argparse, json, math, os, re, subprocess, sys, tempfile, time

import numpy as np
from llama_cpp import Llama
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QTALE = os.path.join(ROOT, ".build", "release", "qtale")
DEFAULT_MODEL = os.path.join(os.path.expanduser("~"), ".cache", "qtale", "SmolLM2-135M-Instruct.Q4_1.gguf")


# --- datasets (native files) -------------------------------------------------------------------------

def read_ai2_jsonl(path):
    """ARC / OpenBookQA JSON Lines: (id, stem, [choice texts], gold index)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            labels = [c["label"] for c in d["question"]["choices"]]
            out.append((d["id"], d["question"]["stem"], [c["text"] for c in d["question"]["choices"]],
                        labels.index(d["answerKey"].strip())))
    return out


def read_obqa_tsv(path):
    """OpenBookQA dev.tsv: ID, Question Stem, Choices "(A) .. (B) ..", Complete Question, Answer Key."""
    out = []
    with open(path, encoding="utf-8") as f:
        rows = [l.rstrip("\n").rstrip("\r") for l in f if l.strip()]
    header = rows[0].split("\t")
    ci = {name: header.index(name) for name in ("ID", "Question Stem", "Choices", "Answer Key")}
    for row in rows[1:]:
        f = row.split("\t")
        parts = re.split(r" \(([B-Z])\) ", f[ci["Choices"]][len("(A) "):])
        texts = [parts[0]] + parts[2::2]
        texts[-1] = texts[-1].strip()
        gold = ord(f[ci["Answer Key"]].strip()) - ord("A")
        out.append((f[ci["ID"]], f[ci["Question Stem"]], texts, gold))
    return out


def load(task, path):
    if task in ("arc_easy", "arc_challenge"):
        return read_ai2_jsonl(path)
    if task == "openbookqa":
        return read_obqa_tsv(path) if path.endswith(".tsv") else read_ai2_jsonl(path)
    raise SystemExit(f"unsupported task {task}")


def requests(task, stem, choices):
    """lm-eval zero-shot (context, continuation) pairs and acc_norm lengths."""
    context = f"Question: {stem}\nAnswer:" if task.startswith("arc_") else stem
    return [(context, " " + c) for c in choices], [float(len(c)) for c in choices]


# --- scoring --------------------------------------------------------------------------------------------

def encode(llm, text):
    return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)]


def encode_pair(llm, context, continuation):
    n = len(context) - len(context.rstrip())
    if n > 0:
        continuation = context[-n:] + continuation
        context = context[:-n]
    whole = encode(llm, context + continuation)
    ctx = encode(llm, context)
    return ctx, whole[len(ctx):]


def loglikelihood(llm, ctx, cont, n_ctx):
    tokens = (ctx + cont)[-(n_ctx + 1):]
    inp = tokens[:-1]
    llm.reset()
    llm.eval(inp)
    logits = np.asarray(llm.scores[:len(inp)], dtype=np.float64)[-len(cont):]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    target = np.array(cont)
    return float(logp[np.arange(len(cont)), target].sum()), len(cont)


def mean_stderr(hits):
    n = len(hits)
    if n < 2:
        return None
    mu = sum(hits) / n
    return math.sqrt(sum((h - mu) ** 2 for h in hits) / (n - 1)) / math.sqrt(n)


def evaluate(llm, task, questions, n_ctx):
    samples, start = [], time.time()
    for i, (qid, stem, choices, gold) in enumerate(questions):
        pairs, lengths = requests(task, stem, choices)
        lls, counts = [], []
        for context, continuation in pairs:
            ctx, cont = encode_pair(llm, context, continuation)
            ll, n = loglikelihood(llm, ctx, cont, n_ctx)
            lls.append(ll)
            counts.append(n)
        samples.append({"id": qid, "gold": gold, "logLikelihoods": lls, "continuationTokens": counts,
                        "prediction": int(np.argmax(lls)),
                        "normalisedPrediction": int(np.argmax(np.array(lls) / np.array(lengths)))})
        if (i + 1) % max(1, len(questions) // 10) == 0 or i + 1 == len(questions):
            print(f"  llama.cpp {i + 1}/{len(questions)}  {time.time() - start:.0f} s", file=sys.stderr)
    acc = [float(s["prediction"] == s["gold"]) for s in samples]
    norm = [float(s["normalisedPrediction"] == s["gold"]) for s in samples]
    return {"acc": sum(acc) / len(acc), "acc_stderr": mean_stderr(acc),
            "acc_norm": sum(norm) / len(norm), "acc_norm_stderr": mean_stderr(norm), "n": len(samples),
            "seconds": time.time() - start}, samples


# --- qtale ------------------------------------------------------------------------------------------------

def run_qtale(args):
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [QTALE, "eval", "--model", args.model, "--task", args.task, "--data", args.data, "--threads",
           str(args.threads), "--log-samples", "--json", path, "--no-progress"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    print("running " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    with open(path) as f:
        report = json.load(f)
    os.unlink(path)
    return report


def compare(task, ours, theirs, tolerance):
    metrics = theirs["results"][task]
    print(f"{'':10} {'acc':>8} {'acc_norm':>9}")
    print(f"{'qtale':10} {100 * metrics['acc']:8.2f} {100 * metrics['acc_norm']:9.2f}")
    print(f"{'llama.cpp':10} {100 * ours['acc']:8.2f} {100 * ours['acc_norm']:9.2f}")
    d_acc = 100 * abs(metrics["acc"] - ours["acc"])
    d_norm = 100 * abs(metrics["acc_norm"] - ours["acc_norm"])
    print(f"difference: acc {d_acc:.2f} points, acc_norm {d_norm:.2f} points (tolerance {tolerance})")
    return d_acc <= tolerance and d_norm <= tolerance, {"acc_points": d_acc, "acc_norm_points": d_norm}


def compare_samples(ours, theirs):
    if not theirs:
        return {}
    deltas, token_mismatch, flips = [], 0, 0
    for a, b in zip(ours, theirs):
        if a["continuationTokens"] != b["continuationTokens"]:
            token_mismatch += 1
        deltas += [abs(x - y) for x, y in zip(a["logLikelihoods"], b["logLikelihoods"])]
        flips += a["prediction"] != b["prediction"]
    out = {"max_abs_loglikelihood_delta": max(deltas), "mean_abs_loglikelihood_delta": sum(deltas) / len(deltas),
           "questions_with_other_token_counts": token_mismatch, "prediction_disagreements": flips}
    print("per question: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in out.items()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=["arc_easy", "arc_challenge", "openbookqa"])
    ap.add_argument("--data", required=True, help="ARC .jsonl, OpenBookQA .jsonl or dev.tsv")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the GGUF qtale runs (default: the cached SmolLM2 Q4_1)")
    ap.add_argument("--native", action="store_true",
                    help="run llama.cpp's own quantized kernels on --model instead of its exact F32 dequantization")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--json", help="write llama.cpp's metrics (and the comparison) here")
    ap.add_argument("--qtale-json", help="compare with this `qtale eval --json` result (use --log-samples)")
    ap.add_argument("--run-qtale", action="store_true", help="run .build/release/qtale eval and compare")
    ap.add_argument("--tolerance", type=float, default=0.5, help="points of acc / acc_norm")
    args = ap.parse_args()

    llama_model = args.model
    if not args.native:
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        from make_goldens import dequantize_to_f32
        llama_model = os.path.join("/tmp", os.path.basename(args.model).replace(".gguf", ".f32.gguf"))
        if not os.path.exists(llama_model):
            print(f"dequantizing {args.model} -> {llama_model}", file=sys.stderr)
            dequantize_to_f32(args.model, llama_model)

    questions = load(args.task, args.data)
    if args.limit:
        questions = questions[:args.limit]
    llm = Llama(model_path=llama_model, n_ctx=args.n_ctx, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, logits_all=True, verbose=False, flash_attn=False,
                type_k=0, type_v=0)  # GGML_TYPE_F32 KV cache, as qtale keeps
    assert str(llm.metadata.get("tokenizer.ggml.add_bos_token", "false")).lower() == "false", \
        "this check assumes a model without BOS (as lm-eval runs SmolLM2)"
    ours, samples = evaluate(llm, args.task, questions, args.n_ctx)
    result = {"task": args.task, "data": args.data, "model": llama_model, "qtale_model": args.model,
              "llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
              "results": {args.task: ours}, "samples": samples}
    print(f"llama.cpp {args.task}: acc {ours['acc']:.4f}  acc_norm {ours['acc_norm']:.4f}  n {ours['n']}  "
          f"({ours['seconds']:.0f} s, {os.path.basename(llama_model)})")

    ok = True
    theirs = None
    if args.run_qtale:
        theirs = run_qtale(args)
    elif args.qtale_json:
        with open(args.qtale_json) as f:
            theirs = json.load(f)
    if theirs is not None:
        assert theirs["results"][args.task]["n"] == ours["n"], "qtale scored a different number of questions"
        ok, diff = compare(args.task, ours, theirs, args.tolerance)
        result["comparison"] = dict(diff, tolerance_points=args.tolerance, within_tolerance=ok,
                                    qtale=theirs["results"][args.task],
                                    **compare_samples(samples, theirs.get("samples")))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
        os.replace(tmp, args.json)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
