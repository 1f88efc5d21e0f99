"""Encoding throughput: ``SentenceTransformer.encode`` as shipped vs our ``DenseEncoder`` (unpadded
ModernBERT forward), same random ModernBERT-base weights, same documents, in one run.

Model: ``ModernBertConfig()`` (its defaults are answerdotai/ModernBERT-base's published
hyperparameters: 22 layers, hidden 768, global attention every 3rd layer, local window 128, RoPE
theta 160k / 10k; 149M parameters), randomly initialised (seeded), with a byte-level BPE tokenizer
trained here on the benchmark's own text (no download). Throughput counts real tokens only (what
the tokenizer produced, [CLS]/[SEP] included, no padding) per second of wall time; tokenization
and pooling are inside the timed calls on both sides.

Two document sets:
- mixed: lengths Normal(256, 64) clamped to 32-512 tokens (ModernBERT paper's benchmark shape),
  cut from real SciFact abstracts (consecutive abstracts joined when one is too short);
- long: the longest real QMSum meeting transcripts (LongEmbed), cut at 8192 tokens.

Each set is split into rounds; in every round both encoders get the same texts, in alternating
order, so load from other processes hits both alike. The FLOP bound: the useful FLOPs of one
document (linears + attention inside each sequence, local layers only on the band
``|i - j| <= 64``) against a fp32 matmul measured in the same run (best of a few, at the start
and the end); "share" is throughput / (matmul FLOP/s / useful FLOPs per token).

    HF_HUB_OFFLINE=1 flock /tmp/mbert-heavy.lock python benchmarks/encode.py          # measured 8 min 59 s
    HF_HUB_OFFLINE=1 flock /tmp/mbert-heavy.lock python benchmarks/encode.py --quick  # measured 2 min 59 s

Ends with the two lines ``mixed ratio: X.XX`` and ``long ratio: X.XX`` (ours / sentence-transformers).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
WINDOW = 64  # half of ModernBERT-base's local_attention 128


def find_data(arg: str | None) -> Path:
    candidates = [Path(arg)] if arg else []
    if os.environ.get("MBERT_RETRIEVAL_DATA"):
        candidates.append(Path(os.environ["MBERT_RETRIEVAL_DATA"]))
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "scifact" / "corpus.jsonl.gz").is_file() and (c / "qmsum-longembed" / "corpus.jsonl.gz").is_file():
            return c
    sys.exit("data not found: pass --data DIR (with scifact/ and qmsum-longembed/) or set MBERT_RETRIEVAL_DATA")


def read_jsonl(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [(d.get("title", "") + " " + d["text"]).strip() for d in map(json.loads, f)]


def build_model(folder: Path, texts: list[str], seed: int, layers: int = 22) -> Path:
    """Random ModernBERT-base weights + a BPE tokenizer trained on ``texts``, saved as a plain HF folder."""
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    from mbert_retrieval.encoders.modernbert import SPECIAL_TOKENS, train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=16000, model_max_length=8192)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = ModernBertConfig(  # published ModernBERT-base hyperparameters are the defaults
        num_hidden_layers=layers,
        pad_token_id=ids["[PAD]"],
        cls_token_id=ids["[CLS]"],
        sep_token_id=ids["[SEP]"],
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
    )
    torch.manual_seed(seed)
    ModernBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def cut(tokenizer, text: str, n_tokens: int) -> str:
    """The prefix of ``text`` holding about ``n_tokens`` tokens with [CLS] and [SEP]."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    keep = max(1, n_tokens - 2)
    return text if keep >= len(offsets) else text[: offsets[keep - 1][1]]


def mixed_documents(tokenizer, abstracts: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    targets = np.clip(np.round(rng.normal(256, 64, n)), 32, 512).astype(int)
    docs, i = [], 0
    for target in targets:
        text = abstracts[i % len(abstracts)]
        i += 1
        while len(tokenizer(text, verbose=False)["input_ids"]) < target:
            text += " " + abstracts[i % len(abstracts)]
            i += 1
        docs.append(cut(tokenizer, text, int(target)))
    return docs


def token_counts(tokenizer, texts: list[str], max_length: int) -> list[int]:
    ids = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]
    return [len(x) for x in ids]


def useful_flops(n: int, cfg) -> float:
    """FLOPs of one n-token document: linears, QK^T and AV inside the sequence (band on local layers)."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    linear = 2 * n * (h * 3 * h + h * h + h * 2 * inter + inter * h)
    i = np.arange(n)
    band_pairs = float(np.sum(np.minimum(n - 1, i + WINDOW) - np.maximum(0, i - WINDOW) + 1))
    total = 0.0
    for kind in cfg.layer_types:
        pairs = float(n) * n if kind == "full_attention" else band_pairs
        total += linear + 4 * pairs * h
    return total


def matmul_flops_per_s(repeats: int = 3) -> float:
    """Best fp32 GFLOP/s of a [8192, 768] x [768, 2304] matmul (ModernBERT-base's Wqkv shape)."""
    import torch

    a, b = torch.randn(8192, 768), torch.randn(768, 2304)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 8192 * 768 * 2304 / (time.perf_counter() - t))
    return best


@dataclass
class Side:
    seconds: float = 0.0
    embeddings: list[np.ndarray] = field(default_factory=list)


def run_set(name: str, texts: list[str], rounds: int, st, ours, batch_size: int, progress: bool) -> tuple[Side, Side]:
    """Both encoders on the same texts, round by round, alternating who goes first."""
    base, fast = Side(), Side()
    chunks = np.array_split(np.arange(len(texts)), rounds)
    for r, idx in enumerate(chunks):
        part = [texts[i] for i in idx]
        order = [("st", base), ("ours", fast)] if r % 2 == 0 else [("ours", fast), ("st", base)]
        for who, side in order:
            t = time.perf_counter()
            if who == "st":
                emb = st.encode(part, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            else:
                emb = ours.encode_documents(part, desc="")
            side.seconds += time.perf_counter() - t
            side.embeddings.append(np.asarray(emb, dtype=np.float32))
            if progress:
                print(f"  {name} round {r + 1}/{rounds} {who}: {time.perf_counter() - t:.1f}s", flush=True)
    return base, fast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="32 mixed documents, 1 long one (under 3 minutes)")
    parser.add_argument("--mixed", type=int, default=None, help="mixed-length documents (default 192, quick 32)")
    parser.add_argument("--long", type=int, default=None, help="long documents at 8192 tokens (default 2, quick 1)")
    parser.add_argument("--long-length", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=32, help="both sides (sentence-transformers' default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", help="folder with scifact/ and qmsum-longembed/ (default ../shared/data)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--layers", type=int, default=22, help="smoke tests only: fewer layers than ModernBERT-base's 22"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true", help="time every round")
    args = parser.parse_args(argv)
    n_mixed = args.mixed if args.mixed is not None else (32 if args.quick else 192)
    n_long = args.long if args.long is not None else (1 if args.quick else 2)

    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig

    from mbert_retrieval.encoders.backend import set_quiet
    from mbert_retrieval.encoders.dense import DenseEncoder

    logging.basicConfig(level=logging.ERROR)
    set_quiet(True)
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = find_data(args.data)
    abstracts = read_jsonl(data / "scifact" / "corpus.jsonl.gz")
    transcripts = read_jsonl(data / "qmsum-longembed" / "corpus.jsonl.gz")

    with tempfile.TemporaryDirectory(prefix="mbert-encode-bench-") as tmp:
        folder = build_model(
            Path(tmp) / "modernbert-base-random", abstracts[:3000] + transcripts[:20], args.seed, args.layers
        )
        cfg = AutoConfig.from_pretrained(folder)
        st = SentenceTransformer(str(folder), device="cpu")
        ours = DenseEncoder(str(folder), device="cpu", batch_size=args.batch_size, show_progress=False)
        tokenizer = st.tokenizer
        n_params = sum(p.numel() for p in st.parameters())
        flops_start = matmul_flops_per_s()

        sets = {}
        mixed = mixed_documents(tokenizer, abstracts, n_mixed, args.seed)
        sets["mixed"] = (mixed, 512, max(1, n_mixed // 96))  # rounds of 96 documents
        by_length = sorted(transcripts, key=len, reverse=True)[:n_long]
        sets["long"] = ([cut(tokenizer, t, args.long_length + 64) for t in by_length], args.long_length, n_long)

        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
            f"{torch.get_num_threads()}, {torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}, "
            f"transformers {transformers.__version__}; model ModernBERT-base config ({cfg.num_hidden_layers} layers), "
            f"random weights ({n_params / 1e6:.1f}M parameters), fp32, batch size {args.batch_size}"
        )
        print(f"matmul fp32 [8192x768]x[768x2304]: {flops_start / 1e9:.1f} GFLOP/s (start)")
        # warm-up (first-call allocations, thread pools) outside the timings
        st.encode(mixed[:4], batch_size=args.batch_size)
        ours.encode_documents(mixed[:4], desc="")
        results = {}
        for name, (texts, max_length, rounds) in sets.items():
            st.max_seq_length = max_length
            ours.model.max_seq_length = max_length
            counts = token_counts(tokenizer, texts, max_length)
            tokens = sum(counts)
            print(
                f"{name}: {len(texts)} documents, {tokens} real tokens "
                f"(min {min(counts)}, mean {tokens / len(counts):.0f}, max {max(counts)}), {rounds} round(s)",
                flush=True,
            )
            base, fast = run_set(name, texts, rounds, st, ours, args.batch_size, args.verbose)
            a, b = np.concatenate(base.embeddings), np.concatenate(fast.embeddings)
            results[name] = {
                "documents": len(texts),
                "tokens": tokens,
                "flops_per_token": sum(useful_flops(n, cfg) for n in counts) / tokens,
                "st_tok_s": tokens / base.seconds,
                "ours_tok_s": tokens / fast.seconds,
                "st_seconds": base.seconds,
                "ours_seconds": fast.seconds,
                "max_abs_diff": float(np.abs(a - b).max()),
            }
        flops_end = matmul_flops_per_s()
        peak = max(flops_start, flops_end)
        print(f"matmul fp32: {flops_end / 1e9:.1f} GFLOP/s (end); bound uses the best, {peak / 1e9:.1f}")
        print()
        print(
            "| documents | real tokens | useful MFLOP/token | sentence-transformers tok/s (share of bound) "
            "| ours tok/s (share of bound) | ratio | max abs diff |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            bound = peak / r["flops_per_token"]
            r["bound_tok_s"] = bound
            r["ratio"] = r["ours_tok_s"] / r["st_tok_s"]
            label = "mixed 32-512 (N(256, 64))" if name == "mixed" else f"long (QMSum, {args.long_length})"
            print(
                f"| {label}, {r['documents']} docs | {r['tokens']} | {r['flops_per_token'] / 1e6:.0f} "
                f"| {r['st_tok_s']:.0f} ({r['st_tok_s'] / bound:.0%}) | {r['ours_tok_s']:.0f} "
                f"({r['ours_tok_s'] / bound:.0%}) | {r['ratio']:.2f} | {r['max_abs_diff']:.1e} |"
            )
        print(f"\nwall time {time.perf_counter() - started:.0f}s")
        if args.json:
            from mbert_retrieval.core.io import write_json

            write_json(args.json, {"matmul_flops_per_s": peak, "results": results, "args": vars(args)})
        for name in ("mixed", "long"):
            print(f"{name} ratio: {results[name]['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
