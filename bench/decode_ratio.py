#!/usr/bin/env python3
"""Decode tokens/s of one engine against the CPU engine's, measured in interleaved pairs.

This machine's timings drift by +-20% over minutes, and the two engines do not drift together, so a
ratio of two separate runs says little. Each pair runs `qtale bench generate --repeats 1` on the engine
and then on `cpu`, back to back; the ratios of the pairs, their median and spread are what to quote.

  python3 bench/decode_ratio.py                      # opencl against cpu, 10 pairs
  python3 bench/decode_ratio.py --backend vulkan --pairs 5 --json out.json

Writes bench/results/decode-ratio-<backend>.json unless --json names another file.
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QTALE = os.path.join(ROOT, ".build", "release", "qtale")


def decode_rate(backend, args):
    command = [QTALE, "bench", "generate", "--backend", backend, "--threads", str(args.threads), "--repeats", "1",
               "--prompt-tokens", str(args.prompt_tokens), "--decode-tokens", str(args.decode_tokens)]
    run = subprocess.run(command, capture_output=True, text=True)
    match = re.search(r"^decode\s+([0-9.]+) tok/s", run.stdout, re.M)
    if run.returncode != 0 or not match:
        sys.exit(f"{' '.join(command)} failed:\n{run.stderr[-2000:]}")
    return float(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="opencl", help="engine to compare with cpu (default: opencl)")
    parser.add_argument("--pairs", type=int, default=10, help="interleaved pairs of runs (default: 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--decode-tokens", type=int, default=96)
    parser.add_argument("--json", help="output file (default: bench/results/decode-ratio-<backend>.json)")
    args = parser.parse_args()
    if args.pairs < 1:
        sys.exit("--pairs must be at least 1")
    if not os.access(QTALE, os.X_OK):
        subprocess.run(["swift", "build", "-c", "release", "--product", "qtale"], cwd=ROOT, check=True)

    pairs = []
    print(f"pair  {args.backend:>8} tok/s  cpu tok/s  ratio")
    for i in range(args.pairs):
        engine, cpu = decode_rate(args.backend, args), decode_rate("cpu", args)
        pairs.append({"engine": engine, "cpu": cpu, "ratio": engine / cpu})
        print(f"{i + 1:4d}  {engine:14.1f}  {cpu:9.1f}  {engine / cpu:5.3f}", flush=True)
    ratios = [p["ratio"] for p in pairs]
    summary = {
        "backend": args.backend, "threads": args.threads, "promptTokens": args.prompt_tokens,
        "decodeTokens": args.decode_tokens, "pairs": pairs,
        "medianRatio": statistics.median(ratios), "minRatio": min(ratios), "maxRatio": max(ratios),
        "pairsAtLeastHalf": sum(r >= 0.5 for r in ratios),
    }
    print(f"ratio median {summary['medianRatio']:.3f}, range {summary['minRatio']:.3f}-{summary['maxRatio']:.3f}, "
          f"{summary['pairsAtLeastHalf']}/{len(ratios)} pairs at 0.5 or more")
    out = args.json or os.path.join(ROOT, "bench", "results", f"decode-ratio-{args.backend}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(out)), delete=False) as f:
        json.dump(summary, f, indent=2)
    os.replace(f.name, out)


if __name__ == "__main__":
    main()
