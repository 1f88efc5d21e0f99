"""``mbert-retrieval mine``: argparse and thin handlers.

``add_parsers(sub)`` registers the commands on the main parser's subparsers (``cli.build_parser``
calls it). Handlers raise ``MbertRetrievalError`` subclasses for user errors.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError

MINE_EXAMPLES = """\
examples:
  # SciFact's train qrels: 3 negatives per (query, positive), skipping the 2 hardest non-positives
  # and anything scoring within 5% of the positive (likely unjudged positives)
  mbert-retrieval mine --beir data/scifact --split train --model sentence-transformers/all-MiniLM-L6-v2 \\
      --range-min 2 --range-max 50 --relative-margin 0.05 --num-negatives 3 --out scifact-triples.jsonl

  # a pairs file (query<TAB>positive, or JSONL {"query", "positive"}) with extra candidate documents
  mbert-retrieval mine --pairs pairs.tsv --corpus collection.tsv --model PATH --absolute-margin 0.1 \\
      --sampling random --seed 1 --index faiss-hnsw --out triples.tsv

  # then train on it
  mbert-retrieval train recipes/scifact-dense.yaml data.train.source=triples data.train.path=scifact-triples.jsonl

outputs: OUT (.jsonl or .tsv, loadable as data.train.source=triples) and OUT.summary.json
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``mine`` on the subparsers ``sub``."""
    fmt = argparse.RawDescriptionHelpFormatter
    m = sub.add_parser(
        "mine",
        help="mine hard negatives for (query, positive) pairs into a triples file",
        description="Encode a corpus with a single-vector model, search it with a FAISS index, and add hard "
        "negatives to (query, positive) pairs, keeping judged positives, a rank window and a score margin out.",
        epilog=MINE_EXAMPLES,
        formatter_class=fmt,
    )
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--beir", help="a BEIR folder: its corpus, and the qrels of --split as (query, positive) pairs")
    src.add_argument("--pairs", help="a TSV (query<TAB>positive) or JSONL {query, positive} file")
    m.add_argument("--split", default="train", help="--beir: qrels split (default train)")
    m.add_argument("--corpus", help="--pairs: extra candidate documents (BEIR folder, .jsonl or .tsv)")
    m.add_argument("--model", required=True, help="a single-vector model (hub id or local path)")
    m.add_argument("--out", required=True, help="triples file to write, .jsonl or .tsv")
    m.add_argument("--index", default="faiss-flat", help="a faiss index spec name or YAML (default faiss-flat)")
    m.add_argument("--num-negatives", type=int, default=3, help="negatives per row (default 3)")
    m.add_argument("--range-min", type=int, default=0, help="skip the N best non-positive hits (default 0)")
    m.add_argument("--range-max", type=int, default=50, help="consider non-positive hits up to this rank (default 50)")
    m.add_argument("--absolute-margin", type=float, help="drop candidates scoring above positive score - margin")
    m.add_argument("--relative-margin", type=float, help="drop candidates scoring above positive score * (1 - margin)")
    m.add_argument("--max-score", type=float, help="drop candidates scoring above this")
    m.add_argument("--sampling", choices=["top", "random"], default="top", help="best candidates or a random choice")
    m.add_argument("--seed", type=int, default=0, help="--sampling random: seed (default 0)")
    m.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    m.add_argument("--max-seq-length", type=int, help="tokens per text (default: the model's)")
    m.add_argument("--query-prompt", help="text prepended to queries (default: the model's)")
    m.add_argument("--document-prompt", help="text prepended to documents (default: the model's)")
    m.add_argument("--device", help="cpu, cuda... (default: a GPU when visible)")
    m.add_argument("--no-progress", action="store_true", help="no progress bars")
    m.set_defaults(func=cmd_mine)


def cmd_mine(args: argparse.Namespace) -> int:
    from .mining import MiningOptions, input_from_beir, input_from_pairs, mine, summary_markdown

    if args.corpus and not args.pairs:
        raise ConfigError("--corpus goes with --pairs (a BEIR folder brings its own corpus)")
    options = MiningOptions(
        num_negatives=args.num_negatives,
        range_min=args.range_min,
        range_max=args.range_max,
        absolute_margin=args.absolute_margin,
        relative_margin=args.relative_margin,
        max_score=args.max_score,
        sampling=args.sampling,
        seed=args.seed,
    )
    data = input_from_beir(args.beir, args.split) if args.beir else input_from_pairs(args.pairs, args.corpus)
    summary = mine(
        data,
        args.model,
        args.out,
        options=options,
        index_spec=args.index,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        query_prompt=args.query_prompt,
        document_prompt=args.document_prompt,
        device=args.device,
        progress=not args.no_progress,
    )
    print(summary_markdown(summary))
    print(f"\ntriples: {args.out}  summary: {args.out}.summary.json", file=sys.stderr)
    return 0
