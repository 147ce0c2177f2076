#!/usr/bin/env python3
"""The quantization table of docs/quantization.md: SmolLM2-135M-Instruct on wikitext-2 valid.

Splits ../shared/data/wikitext-2/valid.txt by lines into a calibration part (first 70 %) and an
evaluation part (last 30 %), so no calibration token is scored. Then, for each method and format, runs
`qtale quantize` (timed, with its report) and `qtale ppl` on the evaluation part, and writes
bench/results/quantization.json plus a Markdown table on stdout.

    python3 bench/quantization.py                         # the whole table
    python3 bench/quantization.py --formats w3g64 --methods rtn gptq --max-windows 20

The float base is the model file itself: its Q4_1 weights dequantized exactly (qtale runs them as they are).
"""
import argparse, json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QTALE = os.environ.get("QTALE", os.path.join(ROOT, ".build", "release", "qtale"))


def run(args):
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(args, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "wikitext-2", "valid.txt"))
    p.add_argument("--methods", nargs="+", default=["rtn", "awq", "gptq", "magr-gptq"])
    p.add_argument("--formats", nargs="+", default=["w4g64", "w4g128", "w3g64", "w3g128"])
    p.add_argument("--calib-samples", type=int, default=None,
                   help="calibration sequences for gptq and magr-gptq (default: qtale's, 128); awq keeps its default (16)")
    p.add_argument("--awq-samples", type=int, default=None, help="calibration sequences for awq (default: qtale's, 16)")
    p.add_argument("--max-windows", type=int, default=40, help="evaluation windows of 512 tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/qtale-quantization")
    p.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "quantization.json"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)

    lines = open(a.data, encoding="utf-8").read().split("\n")
    cut = len(lines) * 7 // 10
    calib, evaluation = os.path.join(a.work, "calib.txt"), os.path.join(a.work, "eval.txt")
    open(calib, "w", encoding="utf-8").write("\n".join(lines[:cut]) + "\n")
    open(evaluation, "w", encoding="utf-8").write("\n".join(lines[cut:]))

    results = json.load(open(a.json)) if os.path.exists(a.json) else {}

    def ppl(model, key):
        out = os.path.join(a.work, key + ".ppl.json")
        run([QTALE, "ppl", "-m", model, "--text", evaluation, "--max-windows", str(a.max_windows),
             "--threads", str(a.threads), "--json", out])
        return json.load(open(out))

    if "float" not in results:
        r = ppl(a.model, "float")
        size = os.path.getsize(subprocess.run([QTALE, "info", a.model], capture_output=True, text=True).stdout.split()[1])
        results["float"] = {"ppl": r["perplexity"], "bytes": size, "tokens": r["scoredTokens"]}
    for fmt in a.formats:
        bits, group = int(fmt[1]), int(fmt.split("g")[1])
        for method in a.methods:
            key = f"{method}-{fmt}"
            model = os.path.join(a.work, key + ".safetensors")
            report = os.path.join(a.work, key + ".report.json")
            cmd = [QTALE, "quantize", "-m", a.model, "--method", method, "--bits", str(bits), "--group", str(group),
                   "--threads", str(a.threads), "-o", model, "--report-json", report]
            if method != "rtn":
                cmd += ["--calib", calib]
                samples = a.awq_samples if method == "awq" else a.calib_samples
                if samples:
                    cmd += ["--calib-samples", str(samples)]
            start = time.time()
            run(cmd)
            seconds = time.time() - start
            r = ppl(model, key)
            rep = json.load(open(report))
            results[key] = {"method": method, "format": fmt, "ppl": r["perplexity"], "bytes": os.path.getsize(model),
                            "quantize_seconds": seconds, "calibration_tokens": rep["calibrationTokens"],
                            "tokens": r["scoredTokens"]}
            json.dump(results, open(a.json + ".tmp", "w"), indent=2, sort_keys=True)
            os.replace(a.json + ".tmp", a.json)

    # Bits per weight of the quantized linears: codes + two binary16 per group.
    print("| model | format | wikitext-2 ppl | file MB | bits/weight (linears) | quantize s | calib tokens |")
    print("|---|---|---|---|---|---|---|")
    f = results["float"]
    print(f"| float (Q4_1 dequantized) | - | {f['ppl']:.2f} | {f['bytes'] / 1e6:.1f} | - | - | - |")
    for key, r in sorted(results.items(), key=lambda kv: (kv[1].get("format", ""), kv[0])):
        if key == "float":
            continue
        bits, group = int(r["format"][1]), int(r["format"].split("g")[1])
        print(f"| {r['method']} | {r['format']} | {r['ppl']:.2f} | {r['bytes'] / 1e6:.1f} | {bits + 32 / group:.2f} | "
              f"{r['quantize_seconds']:.0f} | {r['calibration_tokens']} |")


if __name__ == "__main__":
    main()
