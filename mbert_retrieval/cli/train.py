"""``mbert-retrieval train``, ``mine``, ``sweep`` and ``card``: argparse and thin handlers.

``add_parsers(sub)`` registers the commands on the main parser's subparsers (``cli.app.build_parser``
calls it). Handlers raise ``MbertRetrievalError`` subclasses for user errors.
"""

from __future__ import annotations

import argparse
import sys

from mbert_retrieval.cli.options import add_encoder_options, add_spec_option
from mbert_retrieval.core.errors import ConfigError

MINE_EXAMPLES = """\
examples:
  # SciFact's train qrels: 3 negatives per (query, positive), skipping the 2 hardest non-positives
  # and anything scoring within 5% of the positive (likely unjudged positives)
  mbert-retrieval mine --beir data/scifact --split train --model sentence-transformers/all-MiniLM-L6-v2 \\
      --range-min 2 --range-max 50 --relative-margin 0.05 --num-negatives 3 --out scifact-triples.jsonl

  # a pairs file (query<TAB>positive, or JSONL {"query", "positive"}) with extra candidate documents
  mbert-retrieval mine --pairs pairs.tsv --corpus collection.tsv --model PATH --absolute-margin 0.1 \\
      --sampling random --seed 1 --spec faiss-hnsw --out triples.tsv

  # then train on it
  mbert-retrieval train recipes/scifact-dense.yaml data.train.source=triples data.train.path=scifact-triples.jsonl

outputs: OUT (.jsonl or .tsv, loadable as data.train.source=triples) and OUT.summary.json
"""


SWEEP_EXAMPLES = """\
examples:
  # the paper's DPR learning-rate sweep, picked by mean nDCG@10 of 4 BEIR datasets
  mbert-retrieval sweep recipes/dpr.yaml --lr 1e-5,2e-5,3e-5,5e-5,8e-5,1e-4 --data-dir ./data \\
      output_dir=out/dpr-sweep

  # a small sweep on a CPU
  mbert-retrieval sweep recipes/scifact-dense.yaml --lr 2e-5,5e-5 --datasets scifact --data-dir ../shared/data \\
      model.base=PATH output_dir=out/sweep

Each run trains into OUTPUT_DIR/lr-<value>/ and is evaluated into OUTPUT_DIR/lr-<value>/eval/.
Run the same command again to resume: finished runs are skipped, an interrupted one resumes from its
last checkpoint. Outputs: OUTPUT_DIR/sweep.json and OUTPUT_DIR/sweep.md.
"""


TRAIN_EXAMPLES = """\
examples:
  # fine-tune MiniLM on SciFact's train qrels (a few minutes on a CPU), then evaluate it
  mbert-retrieval train recipes/scifact-dense.yaml model.base=sentence-transformers/all-MiniLM-L6-v2 \\
      output_dir=out/scifact-dense
  mbert-retrieval eval --suite beir --datasets scifact --data-dir DIR --model out/scifact-dense/model --out out/e

  # any recipe key can be overridden: key.sub=value
  mbert-retrieval train recipes/scifact-dense.yaml training.learning_rate=2e-5 training.epochs=1 loss.name=cached_mnrl

  # continue an interrupted run from its last checkpoint
  mbert-retrieval train recipes/scifact-dense.yaml output_dir=out/scifact-dense --resume
"""


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a dense or ColBERT retriever from a recipe",
        description="Run a training recipe (recipes/*.yaml); the model goes to OUTPUT_DIR/model and the "
        "resolved recipe, checkpoints and log beside it.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="recipe YAML path, or a shipped recipe name (see `ls`)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR")
    p.add_argument("--overwrite", action="store_true", help="train again although OUTPUT_DIR/model exists")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved recipe and batch summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the log lines stay)")
    p.set_defaults(func=cmd_train)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``train``, ``mine``, ``sweep`` and ``card`` on the subparsers ``sub``."""
    add_train_parser(sub)
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
    add_spec_option(m, default="faiss-flat", help="a faiss index spec name or YAML (default faiss-flat)")
    m.add_argument("--num-negatives", type=int, default=3, help="negatives per row (default 3)")
    m.add_argument("--range-min", type=int, default=0, help="skip the N best non-positive hits (default 0)")
    m.add_argument("--range-max", type=int, default=50, help="consider non-positive hits up to this rank (default 50)")
    m.add_argument("--absolute-margin", type=float, help="drop candidates scoring above positive score - margin")
    m.add_argument("--relative-margin", type=float, help="drop candidates scoring above positive score * (1 - margin)")
    m.add_argument("--max-score", type=float, help="drop candidates scoring above this")
    m.add_argument("--sampling", choices=["top", "random"], default="top", help="best candidates or a random choice")
    m.add_argument("--seed", type=int, default=0, help="--sampling random: seed (default 0)")
    add_encoder_options(m, ["batch-size", "max-seq-length", "query-prompt", "document-prompt", "device", "no-progress"])
    m.set_defaults(func=cmd_mine)

    s = sub.add_parser(
        "sweep",
        help="train a recipe at several learning rates and pick the best by mean nDCG@10",
        description="Train one run per learning rate, evaluate each on BEIR datasets with the eval pipeline, "
        "and pick the learning rate with the best mean nDCG@10 (the ModernBERT paper's selection).",
        epilog=SWEEP_EXAMPLES,
        formatter_class=fmt,
    )
    s.add_argument("recipe", help="recipe YAML path or shipped recipe name")
    s.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides (all runs)")
    s.add_argument("--lr", required=True, help="comma-separated learning rates, e.g. 1e-5,2e-5,5e-5")
    s.add_argument(
        "--datasets",
        default="nfcorpus,scifact,trec-covid,fiqa",
        help="comma-separated datasets of the suite to pick by (default: the paper's nfcorpus,scifact,trec-covid,fiqa)",
    )
    s.add_argument("--suite", default="beir", help="suite name or YAML holding the datasets (default beir)")
    s.add_argument("--data-dir", help="folder with one BEIR folder per dataset")
    s.add_argument("--download", action="store_true", help="download missing BEIR datasets")
    s.add_argument("--split", help="qrels split to evaluate (default: the suite's)")
    add_encoder_options(s, ["batch-size"], batch_size="eval: texts per forward pass (default 32)")
    add_spec_option(s, help="eval: index spec (default: faiss-flat for dense, plaid for colbert)")
    add_encoder_options(s, ["no-progress"])
    s.set_defaults(func=cmd_sweep)

    c = sub.add_parser(
        "card",
        help="record an eval's numbers in a trained model's card (MODEL/README.md)",
        description="Put the results of `mbert-retrieval eval --model MODEL --out OUT` into the Evaluation "
        "section of the model card written by `mbert-retrieval train`, replacing earlier numbers.",
        epilog="example:\n  mbert-retrieval eval --suite beir --datasets scifact --data-dir DIR --model out/run/model "
        "--out out/eval\n  mbert-retrieval card out/run/model --eval out/eval",
        formatter_class=fmt,
    )
    c.add_argument("model", help="a model folder written by `mbert-retrieval train` (OUTPUT_DIR/model)")
    c.add_argument("--eval", required=True, help="the eval's --out folder (or its results.json)")
    c.set_defaults(func=cmd_card)


def cmd_card(args: argparse.Namespace) -> int:
    from mbert_retrieval.training.card import record_eval_in_card

    card = record_eval_in_card(args.model, args.eval)
    print(f"model card updated: {card}")
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    from mbert_retrieval.flows.mine import MiningOptions, input_from_beir, input_from_pairs, mine, summary_markdown

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
        index_spec=args.spec,
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from mbert_retrieval.flows.sweep import parse_lrs, run_sweep, sweep_markdown

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    result = run_sweep(
        args.recipe,
        parse_lrs(args.lr),
        overrides=args.overrides,
        datasets=datasets,
        suite=args.suite,
        data_dir=args.data_dir,
        download=args.download,
        split=args.split,
        index=args.spec,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(sweep_markdown(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mbert_retrieval.catalog import load_recipe_by_name
    from mbert_retrieval.recipes import check_recipe_paths, dump_recipe

    recipe = load_recipe_by_name(args.recipe, args.overrides)
    check_recipe_paths(recipe)  # before --dry-run's summary and before any model is loaded
    if args.dry_run:  # one YAML document: the recipe (null keys left out), then a `batch:` mapping
        from mbert_retrieval.flows.train import batch_summary

        print(dump_recipe(recipe, nulls=False, batch=batch_summary(recipe)), end="")
        return 0
    from mbert_retrieval.flows.train import train

    final = train(recipe, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"model: {final}")
    return 0
