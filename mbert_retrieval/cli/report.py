"""``mbert-retrieval report``: our results beside the ModernBERT paper's, with confidence intervals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPORT_EXAMPLES = """\
examples:
  # one eval folder against ModernBERT-base, DPR setting (told from the results: ColBERT runs -> colbert)
  mbert-retrieval report out/beir

  # two runs side by side (two models, or our engine vs --engine mteb), with a paired test per dataset
  mbert-retrieval report out/minilm out/minilm-mteb --out out/report

  # ModernBERT-large in the ColBERT setting; another model of the paper's tables
  mbert-retrieval report out/colbert --paper large --setting colbert
  mbert-retrieval report out/beir --model GTE-en-MLM

  # intervals for folders written before per_query/ existed: recomputed from runs/ and the qrels
  mbert-retrieval report out/old --data-dir ./data

outputs (in --out, default: the single OUT_DIR): report.md (also printed), report.json, report.png
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` command."""
    p = sub.add_parser(
        "report",
        help="compare eval results with the ModernBERT paper (Markdown, JSON, PNG; bootstrap CIs, paired tests)",
        description="Per dataset, our nDCG@10 next to the paper's (arXiv 2412.13663, copied in eval/reference/) "
        "with the difference and a bootstrap 95% interval over queries; a paired randomization test between "
        "runs on the same dataset; and the Table 1 summary (BEIR mean over the datasets run, MLDR, "
        "CodeSearchNet, StackQA).",
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dirs", nargs="+", metavar="OUT_DIR", help="folders written by `mbert-retrieval eval`")
    p.add_argument("--paper", choices=["base", "large"], default="base", help="model size in the paper (default base)")
    p.add_argument("--model", default="ModernBERT", help="model name in the paper's tables (default ModernBERT)")
    p.add_argument(
        "--setting",
        choices=["dpr", "colbert"],
        help="single-vector (dpr) or multi-vector (colbert) tables (default: from the first run's encoder kind)",
    )
    p.add_argument("--mldr", choices=["ood", "id"], default="ood", help="MLDR column: out-of-domain (default) or ID")
    p.add_argument("--metric", default="nDCG@10", help="metric compared (default nDCG@10, the paper's)")
    p.add_argument("--labels", help="comma-separated run labels (default: the folder names)")
    p.add_argument("--data-dir", help="data folder: recompute per-query values from runs/ + qrels when missing")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--test-resamples", type=int, default=10_000, help="paired-test resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap and the test (default 0)")
    p.add_argument("--out", help="where report.md/json/png go (default: the OUT_DIR when there is one)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from mbert_retrieval.core.errors import ConfigError
    from mbert_retrieval.core.io import check_folder_target
    from mbert_retrieval.core.types import plural
    from mbert_retrieval.report.paper import build_report, load_results_folder, report_markdown, write_report
    from mbert_retrieval.report.reference import paper_numbers
    from mbert_retrieval.results.metrics import parse_measure

    labels = [s.strip() for s in args.labels.split(",")] if args.labels else [None] * len(args.out_dirs)
    if len(labels) != len(args.out_dirs):
        raise ConfigError(f"--labels gives {plural(len(labels), 'label')} for {plural(len(args.out_dirs), 'folder')}")
    if args.out is None and len(args.out_dirs) > 1:
        raise ConfigError("several OUT_DIRs: say where the report goes with --out")
    if args.resamples < 1 or args.test_resamples < 1:
        raise ConfigError("--resamples and --test-resamples must be positive")
    parse_measure(args.metric)
    check_folder_target(args.out or args.out_dirs[0])  # before the bootstrap's work
    folders = [load_results_folder(d, label) for d, label in zip(args.out_dirs, labels, strict=True)]
    setting = args.setting or ("colbert" if folders[0].kind == "colbert" else "dpr")
    paper = paper_numbers(args.paper, args.model, setting)
    report = build_report(
        folders,
        paper,
        metric=args.metric,
        data_dir=args.data_dir,
        resamples=args.resamples,
        seed=args.seed,
        test_resamples=args.test_resamples,
        mldr=args.mldr,
    )
    paths = write_report(report, Path(args.out or args.out_dirs[0]))
    print(report_markdown(report))
    print(f"report: {paths['report.md']}  {paths['report.json']}  {paths['report.png']}", file=sys.stderr)
    return 0


__all__ = ["add_parsers"]
