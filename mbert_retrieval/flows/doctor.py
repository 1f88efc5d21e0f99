"""``mbert-retrieval doctor``: what this machine can run, which paths the encoders take, known pitfalls.

Reads installed versions from package metadata and asks ``encoders.backend`` for the device,
dtype, attention and unpadding choices; loads no model (``--model`` reads only its config.json).
"""

from __future__ import annotations

import importlib.util
import os
import platform
from importlib import metadata
from typing import Any

# distribution name -> import name (None: report the version only)
LIBRARIES = {
    "torch": "torch",
    "transformers": "transformers",
    "sentence-transformers": "sentence_transformers",
    "flash-attn": "flash_attn",
    "faiss-cpu": "faiss",
    "faiss-gpu": "faiss",
    "fast-plaid": "fast_plaid",
    "voyager": "voyager",
    "mteb": "mteb",
    "bm25s": "bm25s",
    "PyStemmer": "Stemmer",
}


def _version(dist: str) -> str | None:
    for name in (dist, dist.replace("-", "_"), dist.replace("_", "-")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def libraries() -> dict[str, dict[str, Any]]:
    """``{distribution: {"version", "importable"}}`` for the libraries that matter (nothing imported)."""
    found = {}
    for dist, module in LIBRARIES.items():
        version = _version(dist)
        if version is None and dist.startswith("faiss"):
            continue  # only one of faiss-cpu / faiss-gpu is expected
        found[dist] = {"version": version, "importable": importlib.util.find_spec(module) is not None}
    return found


def report(model: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Everything ``doctor`` prints, as data."""
    import torch

    from mbert_retrieval.encoders import backend

    libs = libraries()
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    dev = backend.resolve_device(device)
    paths = backend.planned_paths(dev)
    threads = torch.get_num_threads()
    cpus = os.cpu_count() or 0
    pitfalls = _pitfalls(libs, paths, dev, cuda, threads, cpus)
    planned = _planned(model, dev, paths) if model else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": cpus,
        "torch_threads": threads,
        "cuda": {"available": cuda, "version": torch.version.cuda, "devices": gpus},
        "libraries": libs,
        "paths": paths,
        "model": planned,
        "pitfalls": pitfalls,
    }


def _pitfalls(
    libs: dict[str, dict[str, Any]], paths: dict[str, Any], dev: str, cuda: bool, threads: int, cpus: int
) -> list[str]:
    """Known traps on this machine: library versions, dtypes, truncation, threads, CPU-only speed."""
    import torch

    from mbert_retrieval.encoders.unpadded import TRANSFORMERS_VERSION

    pitfalls = []
    transformers_version = (libs.get("transformers") or {}).get("version") or "?"
    if not transformers_version.startswith(TRANSFORMERS_VERSION + "."):
        pitfalls.append(
            f"transformers {transformers_version}: the unpadded ModernBERT forward was written against "
            f"{TRANSFORMERS_VERSION}.x; run tests/encoders/test_unpadded.py (or pass --no-unpad)"
        )
    pitfalls.append(
        "ColBERT in fp16 with query expansion ([MASK] padding) is known to give NaN scores: keep fp32 or bf16 "
        f"(this machine: {paths['modernbert']['dtype']})"
    )
    pitfalls.append(
        "ModernBERT has 8192 positions, but sentence-transformers checkpoints often save max_seq_length 512 and "
        "ColBERT ones document_length 180-300: long documents are cut unless you pass --max-seq-length / "
        "--document-length (eval reports truncated_documents)"
    )
    if threads < cpus:
        pitfalls.append(f"torch uses {threads} of {cpus} CPUs (OMP_NUM_THREADS / torch.set_num_threads)")
    if dev == "cpu":
        pitfalls.append(
            f"CPU only ({cpus} CPUs, {threads} torch threads, {torch.backends.cpu.get_cpu_capability()}): a "
            "ModernBERT-base encodes some hundreds of tokens per second per core in fp32; bf16 is slower than "
            "fp32 without AMX"
        )
    if cuda and not libs["flash-attn"]["importable"]:
        pitfalls.append("CUDA without flash-attn: ModernBERT runs SDPA (pip install flash-attn for varlen kernels)")
    plaid = (libs.get("fast-plaid") or {}).get("version")
    if plaid and "." in plaid:
        wanted = plaid.rsplit(".", 1)[1]
        have = "".join(torch.__version__.split("+")[0].split("."))
        if wanted != have:
            pitfalls.append(f"fast-plaid {plaid} is built for torch {wanted}, found torch {torch.__version__}")
    if _version("faiss-cpu") and _version("faiss-gpu"):
        pitfalls.append("faiss-cpu and faiss-gpu are both installed: they provide the same module; keep one")
    pylate = _version("pylate")
    if pylate:
        pitfalls.append(
            f"pylate {pylate} is installed beside sentence-transformers {_version('sentence-transformers')}: this "
            "toolkit does not use it (PyLate 1.6 pins sentence-transformers 5.3); keep it in its own environment"
        )
    return pitfalls


def _planned(model: str, dev: str, paths: dict[str, Any]) -> dict[str, Any]:
    """The path ``model``'s encoders will take on ``dev`` (reads only its config.json)."""
    from mbert_retrieval.encoders import backend

    kind = backend.model_type(model)
    b = backend.choose_backend(kind, dev)
    return {
        "model": model,
        "model_type": kind,
        "device": b.device,
        "dtype": b.dtype,
        "attention": b.attn_implementation or "transformers default",
        "unpadded": paths["modernbert"]["unpadded inference (default)"] if kind == "modernbert" else "no",
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [f"python {r['python']} on {r['platform']}, {r['cpus']} CPUs, torch threads {r['torch_threads']}"]
    cuda = r["cuda"]
    lines.append(
        f"CUDA: {'available, ' + ', '.join(cuda['devices']) if cuda['available'] else 'not available'}"
        + (f" (torch built for CUDA {cuda['version']})" if cuda["version"] else "")
    )
    lines.append("")
    lines.append("libraries:")
    for name, info in r["libraries"].items():
        state = info["version"] or "not installed"
        if info["version"] and not info["importable"]:
            state += " (installed but not importable)"
        lines.append(f"  {name:<22} {state}")
    lines.append("")
    lines.append("encoding paths:")
    for kind, info in r["paths"].items():
        lines.append(f"  {kind}:")
        for key, value in info.items():
            lines.append(f"    {key:<40} {value}")
    if r["model"]:
        lines.append("")
        lines.append(f"model {r['model']['model']}:")
        for key, value in r["model"].items():
            if key != "model":
                lines.append(f"    {key:<40} {value}")
    lines.append("")
    lines.append("pitfalls:")
    lines.extend(f"  - {p}" for p in r["pitfalls"])
    return "\n".join(lines)
