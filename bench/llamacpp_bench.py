#!/usr/bin/env python3
"""llama.cpp reference benchmark: prefill and decode tokens/s on a GGUF.

This is the anchor qtale's own benchmarks are compared against.

  prefill: time of one llm.eval() over a fixed N-token prompt -> N / seconds
  decode:  after the prompt, M greedy steps of llm.eval([tok]) -> M / seconds

Each is repeated --repeats times (KV cache reset in between); best and median
tokens/s are reported. Output is JSON on stdout, or in --json FILE.

  python3 bench/llamacpp_bench.py --model M.gguf --threads 2
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="FILE", help="write the JSON here instead of stdout")
    args = ap.parse_args()

    n_ctx = max(512, args.prompt_tokens + args.decode_tokens + 8)
    llm = Llama(model_path=args.model, n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                n_threads=args.threads, n_threads_batch=args.threads,
                logits_all=False, verbose=False, seed=0)

    # A fixed prompt of exactly N tokens: repeat a text, then truncate.
    text = ("The history of computing is a story of people, ideas and machines. "
            "From the abacus to the transistor, each step made calculation cheaper. ")
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    prompt = (ids * (args.prompt_tokens // len(ids) + 1))[:args.prompt_tokens]

    n_vocab = llm.n_vocab()

    def next_token():
        # logits_all=False: llama.cpp computes only the last position's logits
        # (as a real runtime would); read them straight from the context.
        row = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        return int(np.argmax(row))

    # Warm-up (page in weights, build graphs).
    llm.reset(); llm.eval(prompt[:16]); llm.eval([prompt[16]])

    prefill, decode = [], []
    for _ in range(args.repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        prefill.append(args.prompt_tokens / (time.perf_counter() - t0))

        tok = next_token()
        t0 = time.perf_counter()
        for _ in range(args.decode_tokens):
            llm.eval([tok])
            tok = next_token()
        decode.append(args.decode_tokens / (time.perf_counter() - t0))

    result = {
        "engine": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(args.model),
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "decode_tokens": args.decode_tokens,
        "repeats": args.repeats,
        "prefill_tok_s": {"best": max(prefill), "median": statistics.median(prefill),
                          "all": prefill},
        "decode_tok_s": {"best": max(decode), "median": statistics.median(decode),
                         "all": decode},
    }
    out = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    else:
        print(out)


if __name__ == "__main__":
    sys.exit(main())
