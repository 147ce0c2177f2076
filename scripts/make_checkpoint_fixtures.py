#!/usr/bin/env python3
"""Writes the tiny Hugging Face LLaMA checkpoints that Tests/QTaleModelTests/CheckpointImportTests.swift loads.

What it writes, under Tests/QTaleModelTests/Fixtures/checkpoints/ (each file well under 200 KB):

  float/            a float checkpoint: config.json, model.safetensors (BF16, Hugging Face rotate_half
                    order for q_proj/k_proj rows), tokenizer.json, tokenizer_config.json
  awq-w4-g32/       the same model's seven linears per block quantized and packed as AutoAWQ GEMM
                    (4-bit, group 32, zero points): qweight I32 [in, out/8] with the interleaved nibble
                    order [0, 2, 4, 6, 1, 3, 5, 7], qzeros I32 [in/32, out/8] packed the same way,
                    scales F16 [in/32, out]; embedding and norms F16
  gptq-w4-g32/      the same quantized values packed as GPTQ (checkpoint_format "gptq", i.e. v1: qzeros
                    holds zero - 1): qweight I32 [in/8, out] packed along the input dimension, qzeros
                    I32 [in/32, out/8], scales F16 [in/32, out], g_idx I32 [in] = k // 32
  gptq-w8-sym-v2/   8-bit symmetric GPTQ, group_size -1 (one group per row), checkpoint_format
                    "gptq_v2" (qzeros holds the zero itself, 128)
  reference.safetensors
                    for every linear of the 4-bit checkpoints (AWQ and GPTQ hold the same codes, zeros
                    and scales), the dequantized weight (q - z) * s as F32, exact, in Hugging Face
                    orientation [out, in] and Hugging Face row order, named like the linear's module
                    (`model.layers.<i>.self_attn.q_proj` ...)

The model: 2 layers, d_model 32, 4 heads (head_dim 8), 2 KV heads, ffn 96, tied embeddings, the
265-token byte-level vocabulary of Sources/QTaleTestSupport/SyntheticModel.swift (three ChatML control
tokens, the 256 byte tokens, six merges) with the smollm pre-tokenizer (digits split one by one).
Embedding and norm values are exactly representable in both BF16 and F16, so every checkpoint holds the
same non-linear tensors. The 4-bit quantizer is the asymmetric min/max one (scale = (max - min) / 15,
zero = round(-min / scale)), computed with the binary16 scale the files store.

Regenerate (deterministic: fixed seed; needs numpy and the `safetensors` package,
`pip install --break-system-packages safetensors`):

    python3 scripts/make_checkpoint_fixtures.py
"""

import json
import os
import shutil

import numpy as np
from safetensors import TensorSpec, serialize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "QTaleModelTests", "Fixtures", "checkpoints")
SEED = 20250611

LAYERS, D_MODEL, HEADS, KV_HEADS, FFN = 2, 32, 4, 2, 96
HEAD_DIM = D_MODEL // HEADS
GROUP = 32
LINEARS = [  # module, rows (out), columns (in)
    ("self_attn.q_proj", HEADS * HEAD_DIM, D_MODEL),
    ("self_attn.k_proj", KV_HEADS * HEAD_DIM, D_MODEL),
    ("self_attn.v_proj", KV_HEADS * HEAD_DIM, D_MODEL),
    ("self_attn.o_proj", D_MODEL, HEADS * HEAD_DIM),
    ("mlp.gate_proj", FFN, D_MODEL),
    ("mlp.up_proj", FFN, D_MODEL),
    ("mlp.down_proj", D_MODEL, FFN),
]
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble i of a word holds output column 8*b + AWQ_ORDER[i]


# MARK: safetensors with BF16 (numpy has no bfloat16; the package takes raw bytes with a dtype name)

def save(path, tensors):
    """tensors: name -> (dtype name as safetensors' TensorSpec spells it, contiguous ndarray)."""
    arrays = {name: np.ascontiguousarray(a) for name, (_, a) in tensors.items()}
    specs = {name: TensorSpec(dtype=dtype, shape=arrays[name].shape, data_ptr=arrays[name].ctypes.data,
                              data_len=arrays[name].nbytes)
             for name, (dtype, _) in tensors.items()}
    with open(path, "wb") as f:
        f.write(bytes(serialize(specs, metadata={"format": "pt"})))


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_round(x):
    return (to_bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def bf16_and_f16_exact(x):
    """Rounds to BF16 and flushes magnitudes below F16's normal range, so F16 holds the value exactly."""
    y = bf16_round(x)
    y[np.abs(y) < 2.0 ** -14] = 0
    assert np.array_equal(y.astype(np.float16).astype(np.float32), y)
    return y


# MARK: tokenizer (the vocabulary of SyntheticModel.swift)

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_files():
    byte_char = bytes_to_unicode()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r"]
    tokens = specials + [byte_char[b] for b in range(256)] + [m.replace(" ", "") for m in merges]
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    tokenizer_config = {"add_bos_token": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                        "model_max_length": 256, "tokenizer_class": "GPT2Tokenizer"}
    return len(tokens), tokenizer, tokenizer_config


# MARK: quantizers

def quantize_asymmetric(w, bits, group):
    """Min/max asymmetric quantizer per group of `group` inputs: codes q, zeros z [rows, groups], F16 scales."""
    rows, cols = w.shape
    maxq = (1 << bits) - 1
    g = w.reshape(rows, cols // group, group)
    mn, mx = g.min(axis=2), g.max(axis=2)
    s16 = ((mx - mn) / maxq).astype(np.float16)
    assert np.all(s16.astype(np.float32) >= 2.0 ** -14), "scale below binary16's normal range"
    s = s16.astype(np.float32)
    z = np.clip(np.round(-mn / s), 0, maxq).astype(np.int64)
    q = np.clip(np.round(g / s[:, :, None]) + z[:, :, None], 0, maxq).astype(np.int64)
    return q.reshape(rows, cols), z, s16


def quantize_symmetric(w, bits, group):
    rows, cols = w.shape
    maxq = (1 << bits) - 1
    g = w.reshape(rows, cols // group, group)
    s16 = (2 * np.abs(g).max(axis=2) / maxq).astype(np.float16)
    s = s16.astype(np.float32)
    z = np.full(s.shape, (maxq + 1) // 2, dtype=np.int64)
    q = np.clip(np.round(g / s[:, :, None]) + z[:, :, None], 0, maxq).astype(np.int64)
    return q.reshape(rows, cols), z, s16


def dequantize(q, z, s16, group):
    rows, cols = q.shape
    deq = (q.reshape(rows, cols // group, group) - z[:, :, None]) * s16.astype(np.float64)[:, :, None]
    out = deq.reshape(rows, cols).astype(np.float32)
    assert np.array_equal(out.astype(np.float64), deq.reshape(rows, cols)), "(q - z) * s is not exact in float32"
    return out


def pack_words(values, bits, order=None):
    """values [..., n * (32 // bits)] -> uint32 words [..., n]: value i of each run in bits bits*i (or order[i])."""
    per = 32 // bits
    v = values.reshape(values.shape[:-1] + (values.shape[-1] // per, per)).astype(np.uint64)
    if order is not None:
        v = v[..., order]
    words = np.zeros(v.shape[:-1], dtype=np.uint64)
    for i in range(per):
        words |= (v[..., i] & ((1 << bits) - 1)) << (bits * i)
    return words.astype(np.uint32).view(np.int32)


def pack_awq(q, z, s16):
    """AutoAWQ GEMM: qweight [in, out/8] and qzeros [groups, out/8], packed along the output dimension."""
    return {"qweight": ("int32", pack_words(q.T, 4, AWQ_ORDER)),
            "qzeros": ("int32", pack_words(z.T, 4, AWQ_ORDER)),
            "scales": ("float16", s16.T.copy())}


def pack_gptq(q, z, s16, bits, group, zero_offset):
    """GPTQ: qweight [in*bits/32, out] packed along the input dimension; qzeros [groups, out*bits/32]."""
    cols = q.shape[1]
    stored = z - zero_offset
    assert np.all(stored >= 0), "a zero of 0 cannot be stored in the v1 (zero - 1) convention"
    return {"qweight": ("int32", pack_words(q.T.reshape(-1, 32 // bits, q.shape[0]).transpose(0, 2, 1), bits).reshape(-1, q.shape[0])),
            "qzeros": ("int32", pack_words(stored.T, bits)),
            "scales": ("float16", s16.T.copy()),
            "g_idx": ("int32", (np.arange(cols) // group).astype(np.int32))}


# MARK: the model

def main():
    rng = np.random.default_rng(SEED)
    vocab, tokenizer, tokenizer_config = tokenizer_files()
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": D_MODEL, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rope_scaling": None,
        "vocab_size": vocab, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
    }

    embedding = bf16_and_f16_exact(rng.standard_normal((vocab, D_MODEL), dtype=np.float32))
    plain = {"model.embed_tokens.weight": embedding}
    linears = {}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}."
        plain[prefix + "input_layernorm.weight"] = bf16_and_f16_exact(1 + 0.1 * rng.standard_normal(D_MODEL, dtype=np.float32))
        plain[prefix + "post_attention_layernorm.weight"] = bf16_and_f16_exact(1 + 0.1 * rng.standard_normal(D_MODEL, dtype=np.float32))
        for module, rows, cols in LINEARS:
            w = rng.standard_normal((rows, cols), dtype=np.float32) * (1.5 / np.sqrt(cols))
            linears[prefix + module] = bf16_round(w)
    plain["model.norm.weight"] = bf16_and_f16_exact(1 + 0.1 * rng.standard_normal(D_MODEL, dtype=np.float32))

    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)

    def write_checkpoint(name, tensors, quantization_config, dtype):
        directory = os.path.join(ROOT, name)
        os.makedirs(directory)
        c = dict(config, torch_dtype=dtype)
        if quantization_config is not None:
            c["quantization_config"] = quantization_config
        for file, obj in [("config.json", c), ("tokenizer.json", tokenizer), ("tokenizer_config.json", tokenizer_config)]:
            with open(os.path.join(directory, file), "w") as f:
                json.dump(obj, f, indent=1 if file != "tokenizer.json" else None, ensure_ascii=False)
                f.write("\n")
        save(os.path.join(directory, "model.safetensors"), tensors)

    def half(values):
        return ("float16", values.astype(np.float16))

    # (a) float, BF16
    float_tensors = {**plain, **{module + ".weight": w for module, w in linears.items()}}
    write_checkpoint("float", {n: ("bfloat16", to_bf16_bits(v)) for n, v in float_tensors.items()}, None, "bfloat16")

    # (b), (c) 4-bit, group 32: one quantization, two packings; (d) its exact dequantization
    awq, gptq, reference = {n: half(v) for n, v in plain.items()}, {n: half(v) for n, v in plain.items()}, {}
    for module, w in linears.items():
        q, z, s16 = quantize_asymmetric(w, 4, GROUP)
        reference[module] = ("float32", dequantize(q, z, s16, GROUP))
        awq.update({f"{module}.{k}": v for k, v in pack_awq(q, z, s16).items()})
        gptq.update({f"{module}.{k}": v for k, v in pack_gptq(q, z, s16, 4, GROUP, zero_offset=1).items()})
    write_checkpoint("awq-w4-g32", awq, {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True,
                                         "version": "gemm", "modules_to_not_convert": None}, "float16")
    write_checkpoint("gptq-w4-g32", gptq, {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": False,
                                           "sym": False, "static_groups": False, "true_sequential": True,
                                           "damp_percent": 0.01, "checkpoint_format": "gptq"}, "float16")
    save(os.path.join(ROOT, "reference.safetensors"), reference)

    # 8-bit symmetric, one group per row (group_size -1), v2 zero convention
    gptq8 = {n: half(v) for n, v in plain.items()}
    for module, w in linears.items():
        q, z, s16 = quantize_symmetric(w, 8, w.shape[1])
        gptq8.update({f"{module}.{k}": v for k, v in pack_gptq(q, z, s16, 8, w.shape[1], zero_offset=0).items()})
    write_checkpoint("gptq-w8-sym-v2", gptq8, {"quant_method": "gptq", "bits": 8, "group_size": -1, "desc_act": False,
                                               "sym": True, "checkpoint_format": "gptq_v2"}, "float16")

    for dirpath, _, files in sorted(os.walk(ROOT)):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            print(f"{os.path.relpath(p, ROOT):45s} {os.path.getsize(p):8d} bytes")


if __name__ == "__main__":
    main()
