"""``mbert-retrieval eval``: argparse and the handler that turns the options into an ``EvalConfig``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mbert_retrieval.cli.options import add_encoder_options, add_spec_option, encoder_config, positive_int
from mbert_retrieval.core.errors import ConfigError

EVAL_EXAMPLES = """\
examples:
  # the published all-MiniLM-L6-v2 number on SciFact (local BEIR folder ./data/scifact)
  mbert-retrieval eval --suite beir --datasets scifact --data-dir ./data \\
      --model sentence-transformers/all-MiniLM-L6-v2 --out out/minilm

  # all 15 BEIR datasets of the ModernBERT paper, downloading the ones missing from ./data
  mbert-retrieval eval --suite beir --data-dir ./data --download --model PATH --out out/beir

  # the train split, a query prefix and a longer context
  mbert-retrieval eval --suite beir --datasets scifact --data-dir ./data --split train \\
      --query-prompt "search_query: " --document-prompt "search_document: " --max-seq-length 8192 \\
      --model answerdotai/ModernBERT-base --out out/mbert

  # a ColBERT model (multi-vector or PyLate checkpoint, or a plain encoder + [Q]/[D] + projection): PLAID or exact
  mbert-retrieval eval --suite beir --datasets scifact --data-dir ./data --model lightonai/GTE-ModernColBERT-v1 \\
      --kind colbert --spec plaid --document-length 300 --out out/colbert

  # any local BEIR folders, whatever their names (each is a dataset of its own suite)
  mbert-retrieval eval --beir ./data/scifact ./my-data/support-tickets --model PATH --out out/mine

  # score an index built once (index build), without encoding the corpus again
  mbert-retrieval eval --beir ./data/scifact --index-dir indexes/scifact-hnsw --out out/hnsw

  # offline, nothing to download: code search over this Python's standard library
  mbert-retrieval eval --suite stdlib --model PATH --out out/stdlib

  # BM25 (bm25s; MTEB's baseline settings: English stopwords, Snowball stemmer, k1 1.5, b 0.75)
  mbert-retrieval eval --suite beir --datasets scifact --data-dir ./data --model bm25 --out out/bm25
  mbert-retrieval eval --suite longembed --datasets qmsum --data-dir ./data --model bm25 --bm25-preset pyserini \\
      --out out/bm25-pyserini

  # long documents and code from the hub (pinned revisions; fetched once into the hub cache)
  mbert-retrieval eval --suite mldr --download --model PATH --out out/mldr
  mbert-retrieval eval --suite codesearchnet --download --model bm25 --out out/csn-bm25

  # fuse saved runs (result folders of earlier evals) and BM25 by reciprocal rank fusion, or by
  # a weighted sum of min-max (or z-score) normalised scores
  mbert-retrieval eval --suite beir --datasets scifact --data-dir ./data --fuse bm25,out/minilm --out out/rrf
  mbert-retrieval eval --suite beir --datasets scifact --data-dir ./data --fuse bm25,out/minilm \\
      --fuse-method weighted --fuse-weights 0.3,0.7 --fuse-norm zscore --out out/weighted

  # the corpus encoding split across 4 processes (GPUs with nccl, CPU processes with gloo); rank 0
  # reads every shard from OUT/cache, searches and writes the same results as one process
  torchrun --nproc_per_node 4 -m mbert_retrieval eval --suite beir --data-dir ./data --model PATH --out out/beir

outputs (in --out): results.json, results.md, runs/<dataset>.trec, per_query/<dataset>.json ({metric: {query: value}}),
config.resolved.yaml, cache/
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a suite of retrieval datasets",
        description="Encode each dataset's corpus and queries, search them (exact FAISS for single-vector models, "
        "PLAID for ColBERT, or any index spec), and report nDCG@10 and the suite's other metrics with "
        "trec_eval semantics.",
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite", help="a shipped suite name (beir, stdlib; see `ls`) or a suite YAML path")
    what.add_argument(
        "--beir",
        nargs="+",
        metavar="DIR",
        help="one or more local BEIR folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), any name; "
        "evaluated as a suite of their own (split test unless --split)",
    )
    p.add_argument("--datasets", help="comma-separated dataset names of the suite (default: all of them)")
    p.add_argument("--data-dir", help="folder holding one BEIR folder per dataset, DIR/<name> (default: OUT/data)")
    p.add_argument("--download", action="store_true", help="download BEIR datasets missing from --data-dir")
    p.add_argument(
        "--model",
        help="hub id or local path: sentence-transformers 5.x/6.x (dense, multi-vector), PyLate, plain HF; or `bm25`",
    )
    add_encoder_options(
        p,
        ["kind"],
        kind="single-vector or multi-vector model (default: told from the checkpoint; multi-vector, PyLate: colbert)",
    )
    add_spec_option(
        p,
        help="index spec name (see `ls`: faiss-flat, faiss-hnsw, plaid, voyager, exact-maxsim...) or YAML path "
        "(default: faiss-flat for dense; plaid-auto for colbert: PLAID, or on a CPU exact MaxSim where faster)",
    )
    p.add_argument(
        "--index-dir",
        metavar="DIR",
        help="score a built index (from `index build`, or OUT/indices/<dataset> of an earlier eval) on one "
        "dataset's queries and qrels, without encoding the corpus; --model is then optional (default: the "
        "model its manifest records)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", help="qrels split to evaluate (default: each dataset's split in the suite)")
    # --batch-size and --max-seq-length are checked by EncoderConfig (one `error: invalid option` line)
    add_encoder_options(
        p,
        ["batch-size", "max-seq-length", "query-prompt", "document-prompt", "no-normalize"],
        batch_size={"type": int},
        max_seq_length={"type": int, "help": "tokens per text (default: the model's own; 8192 for ModernBERT)"},
    )
    add_encoder_options(  # checked by EncoderConfig too
        p,
        ["query-length", "document-length", "no-query-expansion", "embedding-size"],
        query_length={"type": int},
        document_length={"type": int},
        embedding_size={"type": int},
    )
    p.add_argument("--top-k", type=int, help="documents retrieved per query (default: the suite's, 1000)")
    add_encoder_options(p, ["device"])
    p.add_argument("--cache-dir", help="where document embeddings are cached in shards (default: OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="do not cache document embeddings")
    p.add_argument(
        "--shard-size",
        type=positive_int,
        help="documents per embedding shard (default 50000 dense, 10000 ColBERT); under torchrun the ranks "
        "encode alternate shards",
    )
    add_encoder_options(p, ["trust-remote-code", "no-unpad"])
    p.add_argument("--overwrite", action="store_true", help="recompute everything, replacing results in --out")
    add_encoder_options(p, ["no-progress"])
    p.add_argument(
        "--engine",
        choices=["ours", "mteb"],
        default="ours",
        help="ours (default), or mteb: the same datasets through MTEB's own retrieval evaluator (results.json "
        "with engine mteb; local folders as custom MTEB tasks, with --download MTEB's built-in tasks)",
    )
    lex = p.add_argument_group("BM25 (--model bm25, or bm25 in --fuse)")
    lex.add_argument(
        "--bm25-preset", choices=["mteb", "pyserini"], help="mteb: k1 1.5, b 0.75 (default); pyserini: k1 0.9, b 0.4"
    )
    lex.add_argument("--bm25-k1", type=float, help="term-frequency saturation (overrides the preset)")
    lex.add_argument("--bm25-b", type=float, help="length normalisation (overrides the preset)")
    fu = p.add_argument_group("fusion (instead of --model)")
    fu.add_argument(
        "--fuse",
        metavar="SOURCES",
        help="comma-separated: `bm25` and/or result folders of earlier evals (their runs/ are fused)",
    )
    fu.add_argument("--fuse-method", choices=["rrf", "weighted"], default="rrf", help="default rrf")
    fu.add_argument("--rrf-k", type=float, default=60.0, help="rrf: rank constant (default 60)")
    fu.add_argument("--fuse-weights", help="comma-separated weight per source (default: all 1)")
    fu.add_argument(
        "--fuse-norm", choices=["minmax", "zscore"], default="minmax", help="weighted: per-query normalisation"
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval``: the suite and datasets, what retrieves (a model, BM25, a fusion, a built index), then
    ``run_eval`` (or MTEB's engine); prints the results table."""
    from mbert_retrieval.results.tables import markdown_table

    suite, names = _suite_and_datasets(args)
    _check_retriever(args)
    try:
        cfg = _eval_config(args, suite, names)
    except Exception as e:  # a pydantic ValidationError as one line naming the options
        from mbert_retrieval.config import as_option_error

        error = as_option_error(e)
        if error is e:
            raise
        raise error from None
    if args.engine == "mteb":
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise ConfigError("--engine mteb runs in one process (MTEB's evaluator encodes the corpus itself)")
        from mbert_retrieval.retrieval.mteb import run_eval_mteb as run_eval
    else:
        from mbert_retrieval.flows.evaluate import run_eval
    results = run_eval(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    if not results:  # a torchrun rank other than 0: it encoded its shards, rank 0 reports
        return 0
    print(markdown_table(results))
    print(f"\nresults: {Path(args.out) / 'results.json'}  runs: {Path(args.out) / 'runs'}/", file=sys.stderr)
    return 0


def _suite_and_datasets(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The suite (shipped, a YAML, or ``--beir`` folders) and the dataset names to run, checked."""
    from mbert_retrieval.catalog import beir_folders_suite, load_suite, suites_holding

    if args.beir:
        if args.datasets or args.download:
            raise ConfigError("--beir names the folders itself: leave out --datasets and --download")
        suite = beir_folders_suite(args.beir)
    else:
        suite = load_suite(args.suite)
    names = [d.name for d in suite.datasets]
    if args.datasets:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        unknown = [n for n in names if n not in {d.name for d in suite.datasets}]
        if unknown:
            raise ConfigError(
                f"suite {suite.name!r} has no dataset {', '.join(map(repr, unknown))}; "
                f"it has: {', '.join(d.name for d in suite.datasets)}{suites_holding(unknown, suite.name)}"
            )
    return suite, names


def _check_retriever(args: argparse.Namespace) -> None:
    """Exactly one thing retrieves: ``--model`` (a model or bm25), ``--fuse``, or ``--index-dir``."""
    if args.index_dir:
        if args.fuse or args.spec or args.model == "bm25":
            raise ConfigError("--index-dir scores a built index: leave out --fuse, --spec and --model bm25")
    elif bool(args.model) == bool(args.fuse):
        raise ConfigError("give either --model (a model, or bm25) or --fuse SOURCES")


def _bm25_config(args: argparse.Namespace) -> Any:
    from mbert_retrieval.config import BM25Config

    bm25 = BM25Config.preset(args.bm25_preset or "mteb")
    if args.bm25_k1 is None and args.bm25_b is None:
        return bm25
    return BM25Config(
        k1=bm25.k1 if args.bm25_k1 is None else args.bm25_k1, b=bm25.b if args.bm25_b is None else args.bm25_b
    )


def _fusion_config(args: argparse.Namespace) -> Any:
    from mbert_retrieval.config import FusionConfig

    if not args.fuse:
        return None
    weights = None
    if args.fuse_weights:
        try:
            weights = [float(w) for w in args.fuse_weights.split(",")]
        except ValueError:
            raise ConfigError(f"--fuse-weights: not a comma-separated list of numbers: {args.fuse_weights!r}") from None
    return FusionConfig(
        sources=[s.strip() for s in args.fuse.split(",") if s.strip()],
        method=args.fuse_method,
        k=args.rrf_k,
        weights=weights,
        normalisation=args.fuse_norm,
    )


def _eval_config(args: argparse.Namespace, suite: Any, names: list[str]) -> Any:
    from mbert_retrieval.catalog import load_index_spec
    from mbert_retrieval.config import EvalConfig

    fusion = _fusion_config(args)
    no_encoder = fusion is not None or (args.index_dir and not args.model)
    return EvalConfig(
        suite=suite,
        datasets=names,
        split=args.split,
        data_dir=args.data_dir,
        download=args.download,
        bm25=_bm25_config(args),
        fusion=fusion,
        encoder=None if no_encoder else encoder_config(args),
        index=load_index_spec(args.spec) if args.spec else None,
        index_dir=args.index_dir,
        top_k=args.top_k or suite.top_k,
        out=args.out,
        cache_dir=None if args.no_cache else str(Path(args.cache_dir or Path(args.out) / "cache")),
        shard_size=args.shard_size,
    )
