"""Thread settings of fast-plaid's and FAISS's CPU search next to torch's threads (issue 18, part 3).

PLAID: fast-plaid runs CPU search in joblib threads (``n_processes``, our ``indexes/plaid._search_threads``),
each calling torch ops that use torch's intra-op threads. FAISS: its own OpenMP threads
(``--faiss-threads``, ``faiss.omp_set_num_threads``). Measured on the same embeddings as
``benchmarks/search.py`` (its cache; MiniLM as ColBERT and dense, SciFact), for every combination of
torch threads x search threads:

- PLAID (shipped ``plaid`` spec) over the first ``--plaid-docs`` SciFact documents: single-query p50
  (one ``search`` call per query) and batch ms/query (all 300 queries in one call);
- FAISS IVF-Flat (shipped ``faiss-ivf-flat`` spec) over ``--faiss-docs`` synthetic documents (copies of
  SciFact's MiniLM vectors with noise, as ``benchmarks/search.py`` makes them): single-query p50, batch
  ms/query, and single queries each right after a torch matmul the size of encoding one query
  ("interleaved": what a service that encodes then searches does, where torch's and FAISS's thread pools
  could fight).

    HF_HUB_OFFLINE=1 python benchmarks/threads.py             # about 4 minutes on 2 cores
    HF_HUB_OFFLINE=1 python benchmarks/threads.py --plaid-docs 1000 --faiss-docs 100000

Prints the machine and one table; the fastest setting of each column is what the library should use.
Since the first run (torch 1 thread: PLAID single query 88 vs 116-130 ms, batch 45.7 vs 55.1 ms a query)
``PlaidIndex.search`` sets torch to one thread itself on a CPU, so the torch column no longer changes
PLAID's rows; FAISS was unaffected by torch's threads and is left at every core.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _search_module():
    spec = importlib.util.spec_from_file_location("bench_search", HERE / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _p50_ms(fn, calls: list) -> float:
    fn(*calls[0])  # warm-up
    times = []
    for args in calls:
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plaid-docs", type=int, default=2000)
    p.add_argument("--faiss-docs", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=60, help="single-query searches timed per setting")
    p.add_argument("--data", help="the SciFact BEIR folder (default: as benchmarks/search.py)")
    p.add_argument("--cache-dir", default=str(HERE / ".cache" / "search"))
    args = p.parse_args(argv)

    import logging
    import tempfile

    import torch

    from mbert_retrieval.catalog import load_index_spec
    from mbert_retrieval.data.beir import load_beir_folder
    from mbert_retrieval.encoders import load_encoder
    from mbert_retrieval.encoders.backend import set_quiet
    from mbert_retrieval.indexes import make_index
    from mbert_retrieval.indexes import plaid as plaid_module
    from mbert_retrieval.indexes.faiss_index import set_num_threads

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    set_quiet(True)
    bench = _search_module()
    print(bench.machine_line(), flush=True)
    ds = load_beir_folder(bench.find_scifact(args.data), "test")
    cache = Path(args.cache_dir)
    model = bench.default_model()
    colbert = load_encoder(model, "colbert", document_length=180, show_progress=False)
    c_docs, c_queries = bench.encode_corpus(colbert, ds, cache, True, "scifact colbert")
    dense = load_encoder(model, "dense", show_progress=False)
    d_docs, d_queries = bench.encode_corpus(dense, ds, cache, False, "scifact dense")
    del colbert, dense
    qids = list(ds.queries)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    settings = sorted({1, 2, cores})
    rows = []

    with tempfile.TemporaryDirectory(prefix="mbert-threads-bench-") as tmp:
        ids = [str(i) for i in range(args.plaid_docs)]
        spec = load_index_spec("plaid").index
        index = make_index(spec, c_docs[0].shape[1], folder=Path(tmp) / "plaid")
        t = time.perf_counter()
        index.add(ids, c_docs[: args.plaid_docs])
        index.save()
        n_tokens = sum(len(m) for m in c_docs[: args.plaid_docs])
        print(
            f"PLAID: {args.plaid_docs:,} documents, {n_tokens:,} token vectors, built in "
            f"{time.perf_counter() - t:.0f}s",
            flush=True,
        )
        single = [([q], [c_queries[i]], 10) for i, q in enumerate(qids[: args.queries])]
        original = plaid_module._search_threads
        for torch_threads, search_threads in itertools.product(settings, settings):
            torch.set_num_threads(torch_threads)
            plaid_module._search_threads = lambda n, s=search_threads: s
            p50 = _p50_ms(index.search, single)
            t = time.perf_counter()
            index.search(qids, c_queries, 10)
            batch = 1000 * (time.perf_counter() - t) / len(qids)
            rows.append(("PLAID", torch_threads, f"n_processes {search_threads}", p50, batch, float("nan")))
            print(f"  {rows[-1]}", flush=True)
        plaid_module._search_threads = original
        del index

        vecs = bench.synthetic_dense(d_docs, args.faiss_docs, 0.3, 0)
        spec = load_index_spec("faiss-ivf-flat").index
        index = make_index(spec, vecs.shape[1])
        t = time.perf_counter()
        index.add([str(i) for i in range(len(vecs))], vecs)
        print(f"FAISS IVF-Flat: {len(vecs):,} documents, built in {time.perf_counter() - t:.0f}s", flush=True)
        del vecs
        dq = np.asarray(d_queries, dtype=np.float32)
        single = [([q], dq[i : i + 1], 10) for i, q in enumerate(qids[: args.queries])]
        weight = torch.randn(384, 384)
        tokens = torch.randn(32, 384)

        def encode_then_search(query_ids, emb, k):
            for _ in range(6):  # about one MiniLM query's matmuls
                _ = tokens @ weight
            t = time.perf_counter()
            index.search(query_ids, emb, k)
            return time.perf_counter() - t

        for torch_threads, faiss_threads in itertools.product(settings, settings):
            torch.set_num_threads(torch_threads)
            set_num_threads(faiss_threads)
            p50 = _p50_ms(index.search, single)
            t = time.perf_counter()
            index.search(qids, dq, 10)
            batch = 1000 * (time.perf_counter() - t) / len(qids)
            encode_then_search(*single[0])
            interleaved = 1000 * float(np.median([encode_then_search(*c) for c in single]))
            rows.append(("FAISS ivf-flat", torch_threads, f"omp {faiss_threads}", p50, batch, interleaved))
            print(f"  {rows[-1]}", flush=True)

    print("\n| search | torch threads | search threads | single p50 ms | batch ms/query | after torch op p50 ms |")
    print("|---|---:|---|---:|---:|---:|")
    for name, tt, st, p50, batch, inter in rows:
        print(f"| {name} | {tt} | {st} | {p50:.2f} | {batch:.3f} | {'' if inter != inter else f'{inter:.2f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
