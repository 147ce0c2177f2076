#!/usr/bin/env python3
"""End-to-end speed of qtale against llama.cpp, same machine, same model file, same threads, one run.

For each thread count: `qtale bench generate` and bench/llamacpp_bench.py (llama.cpp through the PyPI
package llama-cpp-python) measure prefill of a 128-token prompt and greedy one-token decode. The table
gives medians and qtale/llama.cpp ratios; --json writes everything.

  python3 bench/generate.py                       # default model, threads 1 and 2
  python3 bench/generate.py --threads 2 --json bench/results/generate.json
  python3 bench/generate.py --backends cpu cpu-int8   # also the int8-activation decode (llama.cpp's numerics)

Needs llama-cpp-python (pip install llama-cpp-python numpy; it compiles llama.cpp, ~10 minutes).
"""
import argparse, datetime, json, os, platform, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QTALE = os.path.join(ROOT, ".build", "release", "qtale")


def run_json(cmd):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        subprocess.run(cmd + ["--json", path], check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)
    finally:
        os.unlink(path)


def model_path(name):
    out = subprocess.run([QTALE, "info", name], check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("file"))
    return line.split()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="GGUF path or 'smollm2' (default)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["cpu"], help="qtale engines to measure (cpu, cpu-int8, ...)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="FILE", help="write all results here (atomically)")
    args = ap.parse_args()

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        sys.exit("bench/generate.py needs llama-cpp-python: python3 -m pip install llama-cpp-python numpy")

    subprocess.run(["swift", "build", "-c", "release", "--product", "qtale", "--package-path", ROOT], check=True,
                   stdout=subprocess.DEVNULL)
    model = model_path(args.model)
    counts = ["--prompt-tokens", str(args.prompt_tokens), "--decode-tokens", str(args.decode_tokens),
              "--repeats", str(args.repeats)]
    rows = []
    for t in args.threads:
        theirs = run_json([sys.executable, os.path.join(ROOT, "bench", "llamacpp_bench.py"), "--model", model,
                           "--threads", str(t)] + counts)
        for backend in args.backends:
            ours = run_json([QTALE, "bench", "generate", "--model", model, "--backend", backend, "--threads", str(t)] + counts)
            rows.append({"threads": t, "backend": backend, "qtale": ours, "llama_cpp": theirs,
                         "prefill_ratio": ours["prefillMedian"] / theirs["prefill_tok_s"]["median"],
                         "decode_ratio": ours["decodeMedian"] / theirs["decode_tok_s"]["median"]})

    print(f"model {os.path.basename(model)}, {args.prompt_tokens}-token prompt, {args.decode_tokens} decode tokens, "
          f"median of {args.repeats}")
    print(f"{'threads':>7} {'engine':>8} | {'prefill tok/s qtale':>19} {'llama.cpp':>9} {'ratio':>6} | "
          f"{'decode tok/s qtale':>18} {'llama.cpp':>9} {'ratio':>6} | {'qtale GB/s':>10}")
    for r in rows:
        q, l = r["qtale"], r["llama_cpp"]
        print(f"{r['threads']:>7} {r['backend']:>8} | {q['prefillMedian']:>19.1f} {l['prefill_tok_s']['median']:>9.1f} "
              f"{r['prefill_ratio']:>5.2f}x | {q['decodeMedian']:>18.1f} {l['decode_tok_s']['median']:>9.1f} "
              f"{r['decode_ratio']:>5.2f}x | {q['decodeWeightGBPerSecond']:>10.1f}")
    if args.json:
        result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "machine": platform.processor()
                  or platform.machine(), "cpus": os.cpu_count(), "model": model, "rows": rows}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp = args.json + ".partial"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
