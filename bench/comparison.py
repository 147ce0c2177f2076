#!/usr/bin/env python3
"""The QTALE comparison of docs/results.md (issue 7 §3) on SmolLM2-135M-Instruct.

Rows, each scored zero-shot on ARC-Easy dev, ARC-Challenge dev and OpenBookQA dev as `qtale eval` does:
  - float: the default model (its Q4_1 weights, which every quantized model below starts from);
  - quant-only: each --methods × --formats model, no routing;
  - D-LLM + quant: the same model with the routers trained without the entropy term, θ = 0.5;
  - QTALE + quant: the same model with the entropy-regularised routers and θ from
    `qtale calibrate-threshold --tolerance 0.5` against that quantized model without routing.
  - ablations: QTALE's routers at θ = 0.5, and D-LLM's routers with the calibrated θ (--ablation-formats).
θ is calibrated on training questions the routers never saw (ARC-Easy train after the --router-examples
used for training, ARC-Challenge train, OpenBookQA train), never on the dev questions scored here.
For each row: acc per task and the mean, execution ratio and FLOPs against dense over the scored tokens,
file size (model + routers), and greedy decode tokens/s (median of --repeats runs of `qtale generate`).

Inputs it makes when missing: the quantized models (bench/quantization.py, same calibration split) and
the routers (bench/train_routers.sh, about 20 minutes on 2 cores). Every step's output is kept in
--work, so an interrupted run resumes; the JSON is rewritten atomically after every row.

    python3 bench/comparison.py                              # the table of docs/results.md
    python3 bench/comparison.py --limit 20 --calib-limit 10  # a quick look
"""
import argparse, json, os, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QTALE = os.environ.get("QTALE", os.path.join(ROOT, ".build", "release", "qtale"))
DATA = os.path.join(ROOT, "..", "shared", "data")
TASKS = [("arc_easy", "arc_easy/ARC-Easy-Dev.jsonl"),
         ("arc_challenge", "arc_challenge/ARC-Challenge-Dev.jsonl"),
         ("openbookqa", "openbookqa/dev.tsv")]
PROMPT = "Explain in a few sentences why the sky is blue and why sunsets are red."


def run(args, **kw):
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(args, check=True, **kw)


def cached_json(path, args):
    """Runs `args` (which write `path`) unless an earlier run already did."""
    if not os.path.exists(path):
        run(args + ["--json", path + ".tmp"], stdout=subprocess.DEVNULL)
        os.replace(path + ".tmp", path)
    return json.load(open(path))


def atomic_json(path, value):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def calibration_sets(a):
    """Training questions the routers did not see, as files `qtale eval` reads."""
    out = []
    arc_e = open(os.path.join(DATA, "arc_easy/ARC-Easy-Train.jsonl")).read().splitlines()[a.router_examples:]
    path = os.path.join(a.work, "arc_easy-heldout-train.jsonl")
    open(path, "w").write("\n".join(arc_e) + "\n")
    out += [("arc_easy", path), ("arc_challenge", os.path.join(DATA, "arc_challenge/ARC-Challenge-Train.jsonl")),
            ("openbookqa", os.path.join(DATA, "openbookqa/train.jsonl"))]
    return out


def routing_args(routers, theta):
    return [] if routers is None else ["--routers", routers, "--threshold", str(theta)]


def evaluate(a, key, model, routers=None, theta=0.5):
    row = {"tasks": {}}
    flops_actual = flops_dense = executed = 0.0
    for task, rel in TASKS:
        r = cached_json(os.path.join(a.work, f"{key}.{task}.n{a.limit or 'all'}.eval.json"),
                        [QTALE, "eval", "-m", model, "--task", task, "--data", os.path.join(DATA, rel),
                         "--threads", str(a.threads), "--no-progress"] + (["--limit", str(a.limit)] if a.limit else [])
                        + routing_args(routers, theta))
        res = r["results"][task]
        row["tasks"][task] = {"acc": res["acc"], "acc_norm": res["acc_norm"], "n": res["n"]}
        e = r.get("execution")
        if e:  # pool the per-task ratios weighted by dense FLOPs, which grow with the tokens run
            flops_actual += e["flops_actual"]; flops_dense += e["flops_dense"]
            executed += e["execution_ratio"] * e["flops_dense"]
    row["acc_mean"] = statistics.mean(t["acc"] for t in row["tasks"].values())
    row["acc_norm_mean"] = statistics.mean(t["acc_norm"] for t in row["tasks"].values())
    row["execution_ratio"] = executed / flops_dense if flops_dense else 1.0
    row["flops_ratio"] = flops_actual / flops_dense if flops_dense else 1.0
    row["bytes"] = os.path.getsize(model) + (os.path.getsize(routers) if routers else 0)
    row["decode_tok_s"] = decode_speed(a, key, model, routers, theta)
    return row


def decode_speed(a, key, model, routers, theta):
    speeds = []
    for i in range(a.repeats):
        path = os.path.join(a.work, f"{key}.decode{i}.json")
        if not os.path.exists(path):
            run([QTALE, "generate", "-m", model, "--prompt", PROMPT, "--chat", "--temperature", "0", "--ignore-eos",
                 "--max-tokens", str(a.decode_tokens), "--threads", str(a.threads), "--stats-json", path + ".tmp"]
                + routing_args(routers, theta), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.replace(path + ".tmp", path)
        speeds.append(json.load(open(path))["decodeTokensPerSecond"])
    return statistics.median(speeds)


def calibrate(a, key, model, routers, calib):
    args = [QTALE, "calibrate-threshold", "-m", model, "--routers", routers, "--tolerance", str(a.tolerance),
            "--limit", str(a.calib_limit), "--threads", str(a.threads), "--resolution", str(a.resolution),
            "--no-progress", "--thresholds"] + [str(t) for t in a.thresholds]
    for task, path in calib:
        args += ["--task", task, "--data", path]
    return cached_json(os.path.join(a.work, f"{key}.calibration.n{a.calib_limit}.json"), args)


def svg_plot(rows, path):
    """Mean accuracy (y) against execution ratio (x), one marker per row: colour by kind, shape by model."""
    colours = {"float": "#000000", "quant": "#1f77b4", "dllm": "#d62728", "qtale": "#2ca02c",
               "qtale-0.5": "#98df8a", "dllm-calibrated": "#ff9896"}
    w, h, m = 720, 460, 60
    xs = [r["execution_ratio"] for r in rows.values()]; ys = [r["acc_mean"] * 100 for r in rows.values()]
    x0, x1 = min(0.5, min(xs) - 0.02), 1.02
    y0, y1 = min(ys) - 2, max(ys) + 3
    px = lambda x: m + (x - x0) / (x1 - x0) * (w - 2 * m)
    py = lambda y: h - m - (y - y0) / (y1 - y0) * (h - 2 * m)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 20}" text-anchor="middle">execution ratio (share of blocks run per token)</text>',
           f'<text x="16" y="{h / 2}" transform="rotate(-90 16 {h / 2})" text-anchor="middle">mean acc, ARC-e/ARC-c/OBQA dev (%)</text>',
           f'<text x="{w / 2}" y="24" text-anchor="middle" font-size="13">SmolLM2-135M: accuracy against execution ratio</text>']
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5; y = y0 + (y1 - y0) * i / 5
        out.append(f'<text x="{px(x):.1f}" y="{h - m + 16}" text-anchor="middle">{x:.2f}</text>')
        out.append(f'<text x="{m - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
    # Colour tells the kind of row, shape the quantized model.
    shapes = ["circle", "square", "triangle", "diamond", "cross"]
    models = sorted({r.get("label", n) for n, r in rows.items() if r["kind"] != "float"})
    shape_of = {m: shapes[i % len(shapes)] for i, m in enumerate(models)}

    def marker(x, y, shape, colour):
        if shape == "square":
            return f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}"/>'
        if shape == "triangle":
            return f'<polygon points="{x:.1f},{y - 6:.1f} {x - 6:.1f},{y + 5:.1f} {x + 6:.1f},{y + 5:.1f}" fill="{colour}"/>'
        if shape == "diamond":
            return f'<polygon points="{x:.1f},{y - 6:.1f} {x - 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} {x + 6:.1f},{y:.1f}" fill="{colour}"/>'
        if shape == "cross":
            return (f'<path d="M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x - 5:.1f},{y + 5:.1f}L{x + 5:.1f},{y - 5:.1f}" '
                    f'stroke="{colour}" stroke-width="3"/>')
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5.5" fill="{colour}"/>'

    for name, r in rows.items():
        x, y = px(r["execution_ratio"]), py(r["acc_mean"] * 100)
        out.append(marker(x, y, shape_of.get(r.get("label", name), "circle"), colours[r["kind"]]))
        if r["kind"] == "float":
            out.append(f'<text x="{x - 9:.1f}" y="{y + 4:.1f}" text-anchor="end">float</text>')
    legend = [("float", "float"), ("quant", "quant-only"), ("dllm", "D-LLM + quant, θ=0.5"),
              ("qtale", "QTALE + quant, calibrated θ"), ("qtale-0.5", "ablation: QTALE routers, θ=0.5"),
              ("dllm-calibrated", "ablation: D-LLM routers, calibrated θ")]
    for i, (kind, label) in enumerate(k for k in legend if any(r["kind"] == k[0] for r in rows.values())):
        out.append(marker(m + 10, m + 10 + 16 * i, "circle", colours[kind]))
        out.append(f'<text x="{m + 20}" y="{m + 14 + 16 * i}">{label}</text>')
    for i, model in enumerate(models):
        out.append(marker(m + 250, m + 10 + 16 * i, shape_of[model], "#555555"))
        out.append(f'<text x="{m + 262}" y="{m + 14 + 16 * i}">{model}</text>')
    out.append("</svg>")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(path + ".tmp", path)


def table(rows):
    lines = ["| model | θ | ARC-e acc / norm | ARC-c acc / norm | OBQA acc / norm | mean acc / norm | exec. ratio "
             "| FLOPs vs dense | size MB | decode tok/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        t = r["tasks"]
        theta = "-" if r.get("theta") is None else f"{r['theta']:.3f}"
        lines.append(f"| {name} | {theta} | "
                     + " | ".join(f"{t[k]['acc'] * 100:.1f} / {t[k]['acc_norm'] * 100:.1f}" for k, _ in TASKS)
                     + f" | {r['acc_mean'] * 100:.2f} / {r['acc_norm_mean'] * 100:.2f} | {r['execution_ratio']:.3f} "
                       f"| {r['flops_ratio']:.3f} | "
                       f"{r['bytes'] / 1e6:.1f} | {r['decode_tok_s']:.1f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--methods", nargs="+", default=["awq", "magr-gptq"])
    p.add_argument("--formats", nargs="+", default=["w4g128", "w3g128"])
    p.add_argument("--routers-dir", default=os.path.join(ROOT, "bench", "results", "routers"),
                   help="holds dllm.safetensors and qtale.safetensors (made by bench/train_routers.sh if missing)")
    p.add_argument("--router-examples", type=int, default=900, help="ARC-Easy train questions the routers trained on")
    p.add_argument("--quant-dir", default="/tmp/qtale-quantization", help="bench/quantization.py's --work")
    p.add_argument("--limit", type=int, default=300, help="dev questions per task (0: all)")
    p.add_argument("--calib-limit", type=int, default=100, help="calibration questions per task for θ")
    p.add_argument("--tolerance", type=float, default=0.5)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    p.add_argument("--resolution", type=float, default=0.05)
    p.add_argument("--kinds", nargs="+", default=["float", "quant", "dllm", "qtale", "qtale-0.5", "dllm-calibrated"],
                   help="which rows to run (earlier results in --work are reused)")
    p.add_argument("--ablation-formats", nargs="+", default=["w3g128"],
                   help="formats that get the D-LLM-routers-with-calibrated-θ ablation")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/qtale-comparison")
    p.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "comparison.json"))
    p.add_argument("--plot", default=os.path.join(ROOT, "docs", "results-accuracy-vs-ratio.svg"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)

    routers = {k: os.path.join(a.routers_dir, k + ".safetensors") for k in ("dllm", "qtale")}

    def ensure_routers(kind):
        if not os.path.exists(routers[kind]):
            run(["bash", os.path.join(ROOT, "bench", "train_routers.sh"), a.routers_dir, str(a.router_examples)])
    quantized = [(m, f, os.path.join(a.quant_dir, f"{m}-{f}.safetensors")) for m in a.methods for f in a.formats]
    for method, fmt, model in quantized:
        if not os.path.exists(model):
            run([sys.executable, os.path.join(ROOT, "bench", "quantization.py"), "--methods", method,
                 "--formats", fmt, "--work", a.quant_dir, "--threads", str(a.threads)])
    quantized = [(f"{m}-{f}", model) for m, f, model in quantized]
    calib = calibration_sets(a)
    model_file = run([QTALE, "info", a.model], capture_output=True, text=True).stdout.split()[1]

    result = {"limit": a.limit, "calib_limit": a.calib_limit, "tolerance": a.tolerance, "threads": a.threads,
              "routers": routers, "rows": {}}
    rows = result["rows"]

    def record(name, kind, row, **extra):
        row.update(kind=kind, **extra)
        rows[name] = row
        atomic_json(a.json, result)
        print(f"{name}: mean acc {row['acc_mean'] * 100:.2f}, ratio {row['execution_ratio']:.3f}, "
              f"{row['decode_tok_s']:.1f} tok/s", file=sys.stderr, flush=True)

    def record_calibrated(name, kind, work_key, key, model, which):
        c = calibrate(a, work_key, model, routers[which], calib)
        theta = c["threshold"]
        record(name, kind, evaluate(a, work_key, model, routers[which], theta),
               theta=theta, label=key, calibration={"threshold": theta, "dense_acc": c["dense"]["acc"],
                                                    "acc": c["point"]["acc"], "execution_ratio": c["point"]["execution_ratio"]})

    if "float" in a.kinds:
        record("float", "float", evaluate(a, "float", model_file))
    for key, model in quantized if "quant" in a.kinds else []:
        record(key, "quant", evaluate(a, key, model))
    if "dllm" in a.kinds:
        ensure_routers("dllm")
    for key, model in quantized if "dllm" in a.kinds else []:
        record(f"D-LLM + {key}", "dllm", evaluate(a, f"dllm-{key}", model, routers["dllm"], 0.5), theta=0.5, label=key)
    if "qtale" in a.kinds:
        ensure_routers("qtale")
    for key, model in quantized if "qtale" in a.kinds else []:
        record_calibrated(f"QTALE + {key}", "qtale", f"qtale-{key}", key, model, "qtale")
    # Ablations that separate the two halves of QTALE: its routers at D-LLM's θ, and D-LLM's routers with
    # QTALE's θ calibration (the latter only for --ablation-formats: each calibration costs several evals).
    for key, model in quantized if "qtale-0.5" in a.kinds else []:
        record(f"QTALE routers + {key}, θ=0.5", "qtale-0.5", evaluate(a, f"qtale05-{key}", model, routers["qtale"], 0.5),
               theta=0.5, label=key)
    for key, model in quantized if "dllm-calibrated" in a.kinds else []:
        if key.split("-")[-1] not in a.ablation_formats:
            continue
        record_calibrated(f"D-LLM routers + {key}, calibrated θ", "dllm-calibrated", f"dllmcal-{key}", key, model, "dllm")
    svg_plot(rows, a.plot)
    print(table(rows))


if __name__ == "__main__":
    main()
