"""``mbert-retrieval quickstart``: argparse and a thin handler over ``flows.quickstart.run_quickstart``.

``add_parsers(sub)`` registers the command on the main parser's subparsers (``cli.app.build_parser``).
"""

from __future__ import annotations

import argparse
import sys

# What the runs build and how long the default one takes, for the help text. Written here, not imported
# from quickstart.py / encoders.modernbert (that would load pydantic and numpy for every --help);
# tests/cli/test_cli.py holds them equal to quickstart.SIZES, encoders.modernbert.MODEL_SIZES and the
# default run's time in docs/quickstart.md.
MODEL = "4 x 128"  # layers x hidden size of MODEL_SIZES["mini"], the model of both sizes
TINY_EXAMPLES, TINY_STEPS = 900, 20
MINUTES = 2  # the default run on 2 CPU cores: 2 min 06 s measured
SIZE_HELP = (
    f"small (default): all examples, {MODEL} model, the recipes' steps; "
    f"tiny: {TINY_EXAMPLES} examples, {MODEL} model, {TINY_STEPS} steps"
)

QUICKSTART_EXAMPLES = f"""\
examples:
  # the whole pipeline offline on this machine's Python standard library (about {MINUTES} minutes on 2 CPU cores)
  mbert-retrieval quickstart

  # elsewhere, with a time budget: the training steps are chosen to fit about 10 minutes here
  mbert-retrieval quickstart --out out/qs10 --minutes 10

  # a real ModernBERT instead of the small one trained from scratch (hub id with network, or a local path)
  mbert-retrieval quickstart --model answerdotai/ModernBERT-base --out out/qs-mbert

  # a reduced run ({TINY_EXAMPLES} examples, {MODEL} model, {TINY_STEPS} steps; what the test runs)
  mbert-retrieval quickstart --size tiny --out out/qs-tiny

Stages: build data -> build model -> BM25 and untrained baselines -> train dense and ColBERT
(recipes/quickstart-dense.yaml, recipes/quickstart-colbert.yaml) -> FAISS index -> evaluate (FAISS, PLAID)
-> one table, the output paths and an example query. Run it again to reuse the finished stages;
--overwrite starts over. Outputs: OUT/results.json, OUT/results.md, and the folders the table names.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="train, index and evaluate a small ModernBERT retriever end to end, offline, in minutes",
        description="Build a code-search set from this Python's standard library, train a small ModernBERT "
        "(or --model) as a dense and as a ColBERT retriever with the shipped recipes, index them (FAISS, PLAID) "
        "and compare them with BM25 and with the untrained model on the held-out packages.",
        epilog=QUICKSTART_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="out/quickstart", help="output folder (default: out/quickstart)")
    p.add_argument(
        "--minutes",
        type=float,
        help="time budget: choose the training steps so the whole run takes about this long here "
        f"(default: the recipes' step counts, about {MINUTES} minutes on 2 CPU cores)",
    )
    p.add_argument(
        "--model",
        help="hub id or local path of an encoder to train instead of the small ModernBERT built from scratch "
        "(e.g. answerdotai/ModernBERT-base; a hub id needs the network)",
    )
    p.add_argument(
        "--size",
        choices=["small", "tiny"],
        default="small",
        help=SIZE_HELP,
    )
    p.add_argument("--overwrite", action="store_true", help="start over instead of reusing finished stages")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_quickstart)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from mbert_retrieval.flows.quickstart import format_example, format_outputs, render_markdown, run_quickstart

    results = run_quickstart(
        args.out,
        size=args.size,
        model=args.model,
        minutes=args.minutes,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print()
    print(render_markdown(results))
    print()
    print(format_outputs(results))
    print()
    print(format_example(results["example"]))
    sys.stdout.flush()
    return 0
