"""``mbert-retrieval index build|add|info`` and ``mbert-retrieval search``: argparse and thin handlers.

``add_parsers(sub)`` registers the commands on the main parser's subparsers. Each handler takes
the parsed ``argparse.Namespace`` (usable as a plain function) and raises ``MbertRetrievalError``
subclasses for user errors. ``cli.app`` registers them (``python -m mbert_retrieval index ...``, also
under ``torchrun``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from mbert_retrieval.cli.options import (
    add_encoder_options,
    add_index_dir_option,
    apply_unpad_option,
    positive_int,
)
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.types import plural

log = logging.getLogger(__name__)

BUILD_EXAMPLES = """\
examples:
  # an HNSW index over a BEIR corpus with all-MiniLM-L6-v2 (spec: a shipped name or a YAML path)
  mbert-retrieval index build --model sentence-transformers/all-MiniLM-L6-v2 \\
      --corpus data/scifact --spec faiss-hnsw --out indexes/scifact-hnsw

  # a TSV corpus (id<TAB>text, header optional), ModernBERT with prompts, exact search
  mbert-retrieval index build --model PATH --corpus collection.tsv --spec indices/faiss-flat.yaml \\
      --query-prompt "search_query: " --document-prompt "search_document: " --out indexes/msmarco

  # a PLAID index with a ColBERT model (multi-vector / PyLate checkpoint, e.g. lightonai/GTE-ModernColBERT-v1)
  mbert-retrieval index build --model lightonai/GTE-ModernColBERT-v1 --corpus data/scifact \\
      --spec plaid --document-length 300 --out indexes/scifact-plaid
  mbert-retrieval search --index-dir indexes/scifact-plaid "how do statins work"

  # encode on 4 GPUs (or 2 CPU processes with gloo); rank 0 writes the index (FAISS specs)
  torchrun --nproc_per_node 4 -m mbert_retrieval index build --model PATH --corpus corpus.jsonl \\
      --spec faiss-ivf-flat --out indexes/big

A killed build resumes: run the same command again (finished shards in OUT.partial/ are reused).
An existing --out is replaced only with --overwrite, and only once the new index is complete.
"""

ADD_EXAMPLES = """\
examples:
  mbert-retrieval index add indexes/scifact-hnsw --corpus new-docs.jsonl
  mbert-retrieval index add indexes/docs-flat --corpus updated.tsv --replace   # same ids: replaced

Documents are encoded with the encoder recorded in the index's manifest.json. --replace needs an
index kind that can remove vectors (flat, IVF, SQ; not HNSW).
"""

SEARCH_EXAMPLES = """\
examples:
  mbert-retrieval search --index-dir indexes/scifact-hnsw "statins reduce cardiovascular risk" -k 5
  mbert-retrieval search --index-dir indexes/scifact-hnsw "statins" --json

  # batch: BEIR-style queries.jsonl (or id<TAB>text) in, a 6-column TREC run out (top 1000)
  mbert-retrieval search --index-dir indexes/scifact-hnsw --queries data/scifact/queries.jsonl --out run.trec

  # ... and its nDCG@10, R@100, RR@10, MAP@100 against the judgements (or: eval --index-dir)
  mbert-retrieval search --index-dir indexes/scifact-hnsw --queries data/scifact/queries.jsonl --out run.trec \\
      --qrels data/scifact/qrels/test.tsv

The query encoder is the one recorded in the index's manifest.json; --model gives another copy of
it (refused if its dimension or fingerprint differs).
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``index`` (``build``, ``add``, ``info``) and ``search`` on the subparsers ``sub``."""
    fmt = argparse.RawDescriptionHelpFormatter
    p_index = sub.add_parser(
        "index",
        help="build, extend and inspect indices over a corpus (FAISS; PLAID, Voyager, exact MaxSim)",
        description="Build a FAISS index (spec: indices/faiss-*.yaml) with a single-vector model, or a PLAID / "
        "Voyager / exact-MaxSim index (indices/plaid.yaml, ...) with a ColBERT model, over a corpus; add documents "
        "to a FAISS index; or show what an index holds.",
        formatter_class=fmt,
    )
    p_index.set_defaults(func=lambda args: _print_help(p_index))
    actions = p_index.add_subparsers(dest="index_command", metavar="ACTION")

    b = actions.add_parser(
        "build",
        help="encode a corpus and save an index (FAISS, or PLAID/Voyager/exact for ColBERT models)",
        description="Encode a corpus (BEIR folder, .jsonl or .tsv) in resumable shards and save an index "
        "with its manifest, document ids and text snippets. The spec's kind decides: faiss for single-vector "
        "models, plaid / voyager / exact-maxsim for ColBERT models.",
        epilog=BUILD_EXAMPLES,
        formatter_class=fmt,
    )
    b.add_argument(
        "--model",
        required=True,
        help="hub id or local path of a sentence-transformers / HF model (multi-vector / PyLate for PLAID)",
    )
    b.add_argument("--corpus", required=True, help="a BEIR folder, a .jsonl (_id, title, text) or a .tsv (id, text)")
    b.add_argument("--spec", required=True, help="a shipped index spec (faiss-flat, faiss-hnsw, ...; see `ls`) or YAML")
    b.add_argument("--out", required=True, help="the index folder to write")
    add_encoder_options(
        b,
        ["batch-size", "max-seq-length", "kind", "query-length", "document-length", "query-prompt"],
        kind="single-vector or ColBERT model (default: told from the checkpoint; plaid/voyager/exact specs: colbert)",
        query_length="ColBERT (PLAID/Voyager/exact specs): query tokens",
        document_length="ColBERT: document tokens (default: the model's)",
        query_prompt="text prepended to queries at search time (default: the model's own)",
    )
    add_encoder_options(b, ["document-prompt", "no-normalize", "device", "trust-remote-code"])
    _add_build_options(b)
    b.add_argument("--seed", type=int, default=0, help="seed of the training sample of IVF/PQ/SQ (default 0)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index at --out once done")
    b.set_defaults(func=cmd_index_build)

    a = actions.add_parser(
        "add",
        help="append documents to an index, with the encoder that built it",
        description="Encode new documents with the index's recorded encoder and append them (atomically).",
        epilog=ADD_EXAMPLES,
        formatter_class=fmt,
    )
    a.add_argument("index", metavar="DIR", help="the index folder")
    a.add_argument("--corpus", required=True, help="new documents: a BEIR folder, .jsonl or .tsv")
    a.add_argument("--replace", action="store_true", help="replace documents whose ids are already in the index")
    add_encoder_options(
        a,
        ["batch-size", "device", "trust-remote-code"],
        batch_size={"default": None, "help": "texts per forward pass (default: the build's)"},
    )
    _add_build_options(a)
    a.set_defaults(func=cmd_index_add)

    i = actions.add_parser("info", help="show an index's manifest summary", description="What an index holds.")
    i.add_argument("index", metavar="DIR", help="the index folder")
    i.add_argument("--json", action="store_true", help="print the whole manifest.json")
    i.set_defaults(func=cmd_index_info)

    s = sub.add_parser(
        "search",
        help="search an index with a query, or a file of queries into a TREC run",
        description="Encode queries with the index's encoder and print the top hits (id, score, snippet), "
        "or write a 6-column TREC run for a queries file.",
        epilog=SEARCH_EXAMPLES,
        formatter_class=fmt,
    )
    s.add_argument("query", nargs="?", help="the query text (or use --queries)")
    add_index_dir_option(s, help="the index folder (from `index build`, or OUT/indices/<dataset> of an eval)")
    s.add_argument(
        "-k", "--top-k", dest="k", type=positive_int, help="hits per query (default 10; 1000 with --queries)"
    )
    s.add_argument("--json", action="store_true", help="JSON output (with --queries and no --out: JSON lines)")
    s.add_argument("--queries", help="a queries file: BEIR-style .jsonl (_id, text) or .tsv (id, text)")
    s.add_argument("--out", help="with --queries: the TREC run file to write")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out run file")
    s.add_argument(
        "--qrels",
        metavar="FILE",
        help="with --queries and --out: score the run against these judgements (BEIR qrels TSV) and print "
        "nDCG@10, R@100, RR@10 and MAP@100",
    )
    s.add_argument("--model", help="another copy of the index's model (checked against the manifest)")
    add_encoder_options(
        s,
        ["batch-size", "device", "trust-remote-code", "no-progress", "no-unpad"],
        batch_size={"default": None, "help": "queries per forward pass"},
    )
    s.set_defaults(func=cmd_search)


def _add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-blank", action="store_true", help="leave out blank documents (counted) instead of failing")
    p.add_argument("--shard-size", type=positive_int, help="documents per embedding shard (default 50000)")
    p.add_argument(
        "--work-dir", help="where embedding shards are kept until the index is written (default OUT.partial)"
    )
    p.add_argument("--keep-work-dir", action="store_true", help="keep the embedding shards after success")
    p.add_argument("--cpu-index", action="store_true", help="keep the FAISS index on the CPU even with a GPU")
    p.add_argument("--faiss-threads", type=positive_int, help="OpenMP threads for FAISS (default: all cores)")
    add_encoder_options(p, ["no-progress", "no-unpad"])


def _print_help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _build_options(args: argparse.Namespace, **more: object) -> object:
    """The ``BuildOptions`` of ``index build`` / ``index add`` (shards, work folder, FAISS placement)."""
    from mbert_retrieval.flows.index_build import BuildOptions

    return BuildOptions(
        shard_size=args.shard_size,
        work_dir=args.work_dir,
        keep_work_dir=args.keep_work_dir,
        skip_blank=args.skip_blank,
        use_gpu=not args.cpu_index,
        faiss_threads=args.faiss_threads,
        progress=not args.no_progress,
        **more,
    )


def cmd_index_build(args: argparse.Namespace) -> int:
    """``index build``: encode ``args.corpus`` with ``args.model`` into a ``args.spec`` index at ``args.out``."""
    from mbert_retrieval.flows.index_build import build_index

    apply_unpad_option(args)
    result = build_index(
        args.model,
        args.corpus,
        args.spec,
        args.out,
        options=_build_options(args, overwrite=args.overwrite, seed=args.seed),
        kind=args.kind,
        # as keywords: build_index keeps those of the spec's kind (a FAISS build ignores the ColBERT lengths)
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        query_prompt=args.query_prompt,
        document_prompt=args.document_prompt,
        normalize=False if args.no_normalize else None,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        query_length=args.query_length,
        document_length=args.document_length,
    )
    if result is None:  # a torchrun rank other than 0: its shards are encoded, rank 0 writes
        return 0
    reused = f", {result.reused_shards} reused from an interrupted run" if result.reused_shards else ""
    print(
        f"built {result.factory} index of {plural(result.n_docs, 'document')} ({result.dim}-dim) in {result.path} "
        f"in {_seconds(result.seconds['total'])} ({plural(result.encoded_shards, 'shard')} encoded{reused})"
    )
    return 0


def cmd_index_add(args: argparse.Namespace) -> int:
    """``index add``: append ``args.corpus`` to the index in ``args.index``."""
    from mbert_retrieval.flows.index_build import add_documents

    apply_unpad_option(args)
    result = add_documents(
        args.index,
        args.corpus,
        replace=args.replace,
        batch_size=args.batch_size,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        options=_build_options(args),
    )
    if result is None:
        return 0
    replaced = f", replaced {result.replaced:,}" if result.replaced else ""
    print(
        f"added {plural(result.added, 'document')}{replaced} to {result.path}: {plural(result.n_docs, 'document')} now"
    )
    return 0


def cmd_index_info(args: argparse.Namespace) -> int:
    """``index info``: the manifest of ``args.index``, summarised (or whole with ``--json``)."""
    from mbert_retrieval.indexes.manifest import read_manifest

    m = read_manifest(args.index)
    if args.json:
        print(json.dumps(m, indent=2, ensure_ascii=False))
        return 0
    enc = m.get("encoder") or {}
    build = m.get("build") or {}
    spec = f"{m['kind']} {m.get('factory', '')} ({m.get('spec_name', '?')})"
    print(f"{args.index}: {spec}, {plural(m['n_docs'], 'document')}")
    print(f"  encoder   {enc.get('name')} dim {m['dim']}, max_seq_length {enc.get('max_seq_length')}")
    print(f"            fingerprint {enc.get('fingerprint')}")
    print(f"  built     {m.get('created')} from {build.get('corpus')} in {build.get('seconds', {}).get('total')} s")
    for entry in m.get("history") or []:
        print(
            f"  {entry['op']:<9} {entry['at']}: +{entry['added']} (replaced {entry['replaced']}) from {entry['corpus']}"
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """``search``: one query printed, or ``--queries`` into a TREC run (``--out``) or JSON lines."""
    import time
    from pathlib import Path

    from mbert_retrieval.core.io import check_file_target
    from mbert_retrieval.data.beir import load_qrels
    from mbert_retrieval.data.corpus import load_queries_input
    from mbert_retrieval.retrieval.search import SearchIndex

    if not args.index_dir:
        raise ConfigError("give the index folder: --index-dir DIR")
    if (args.query is None) == (args.queries is None):
        raise ConfigError("give either a query text or --queries FILE")
    if args.qrels and not args.out:
        raise ConfigError("--qrels scores a run: use it with --queries FILE --out RUN.trec")
    if args.out and not args.queries:
        raise ConfigError("--out writes a TREC run for --queries; a single query prints its hits")
    if args.queries and not args.out and not args.json:
        raise ConfigError("--queries needs --out RUN.trec (or --json for JSON lines on stdout)")
    if args.out:
        check_file_target(args.out, overwrite=args.overwrite)
    queries = load_queries_input(args.queries) if args.queries else None
    apply_unpad_option(args)
    k = args.k or (1000 if queries is not None else 10)
    progress = queries is not None and not args.no_progress
    qrels = load_qrels(Path(args.qrels)) if args.qrels else None  # read (and checked) before any model loads
    with SearchIndex.load(
        args.index_dir,
        model=args.model,
        device=args.device,
        batch_size=args.batch_size,
        progress=progress,
        trust_remote_code=args.trust_remote_code,
    ) as index:
        if queries is None:
            (hits,) = index.search([args.query], k=k)
            if args.json:
                print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
            else:
                width = max([len(h.id) for h in hits] + [2])
                print(f"{'rank':>4}  {'score':>8}  {'id':<{width}}  text")
                for h in hits:
                    text = (h.snippet or "")[:120]
                    print(f"{h.rank:>4}  {h.score:8.4f}  {h.id:<{width}}  {text}")
            return 0
        index.encoder  # noqa: B018 - load it before the clock starts
        t = time.perf_counter()
        if args.out:
            from mbert_retrieval.results.runs import write_run

            run = index.run(queries, k=k)
            seconds = time.perf_counter() - t
            write_run(args.out, run, tag=f"mbert-retrieval_{Path(args.index_dir).name}")
            print(
                f"searched {plural(len(queries), 'query', 'queries')} (top {k}) in {_seconds(seconds)}: {args.out}",
                file=sys.stderr,
            )
            if qrels is not None:
                _print_scores(qrels, run, args.qrels)
        else:
            qids = list(queries)
            for qid, hits in zip(qids, index.search([queries[q] for q in qids], k=k), strict=True):
                print(json.dumps({"query": qid, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
    return 0


def _print_scores(qrels: dict, run: dict, source: str) -> None:
    """The run's scores against ``qrels`` (trec_eval semantics), as a one-row Markdown table, x100."""
    from mbert_retrieval.config import DEFAULT_METRICS
    from mbert_retrieval.results.metrics import evaluate

    judged = {q: docs for q, docs in qrels.items() if q in run}
    if not judged:
        raise ConfigError(f"{source}: none of its queries is in the run (are they the same query ids?)")
    ev = evaluate(judged, run, list(DEFAULT_METRICS))
    print("| queries scored | " + " | ".join(ev.means) + " |")
    print("|---:|" + "---:|" * len(ev.means))
    print(f"| {ev.n_queries:,} | " + " | ".join(f"{100 * v:.2f}" for v in ev.means.values()) + " |")
    if len(judged) < len(qrels):
        print(f"({len(qrels) - len(judged):,} judged queries of {source} were not searched)", file=sys.stderr)
    print("(metrics x100, trec_eval semantics)", file=sys.stderr)
