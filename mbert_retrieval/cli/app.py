"""``mbert-retrieval`` command line. Parses arguments and calls the library; nothing else."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from mbert_retrieval import __version__
from mbert_retrieval.cli.doctor import add_parsers as add_doctor_parsers
from mbert_retrieval.cli.index import add_parsers as add_index_parsers
from mbert_retrieval.cli.options import add_spec_option
from mbert_retrieval.cli.quickstart import add_parsers as add_quickstart_parsers
from mbert_retrieval.cli.report import add_parsers as add_report_parsers
from mbert_retrieval.cli.train import add_parsers as add_train_parsers
from mbert_retrieval.core.checkpoint import ALLOW_PICKLE_ENV
from mbert_retrieval.core.errors import MbertRetrievalError
from mbert_retrieval.core.io import WRITE_ERRNOS

log = logging.getLogger("mbert_retrieval")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every parser's formatter (``build_parser`` sets it): the description filled to the terminal (at
    most 100 columns), its paragraphs kept; the epilog (examples, command lines) printed verbatim."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_sections = False

    def start_section(self, heading: str | None) -> None:
        self._in_sections = True  # the description is added before the option sections, the epilog after them
        super().start_section(heading)

    def add_text(self, text: str | None) -> None:
        if self._in_sections or text is None or text is argparse.SUPPRESS:
            super().add_text(text)
        else:
            self._add_item(self._format_description, [text])

    def _format_description(self, text: str) -> str:
        if "%(prog)" in text:
            text = text % {"prog": self._prog}
        width = max(min(self._width, 100) - self._current_indent, 11)
        indent = " " * self._current_indent
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        return (
            "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in paragraphs)
            + "\n\n"
        )


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

outputs (in --out): results.json, results.md, runs/<dataset>.trec, per_query/<dataset>.json ({metric: {query: value}}),
config.resolved.yaml, cache/
"""


def _add_eval(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--kind",
        choices=["dense", "colbert"],
        help="single-vector or multi-vector model (default: told from the checkpoint; multi-vector, PyLate: colbert)",
    )
    add_spec_option(
        p,
        help="index spec name (see `ls`: faiss-flat, faiss-hnsw, plaid, voyager, exact-maxsim...) or YAML path "
        "(default: faiss-flat for dense, plaid for colbert)",
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
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--max-seq-length", type=int, help="tokens per text (default: the model's own; 8192 for ModernBERT)")
    p.add_argument("--query-prompt", help="text prepended to every query (default: the model's 'query' prompt)")
    p.add_argument("--document-prompt", help="text prepended to every document (default: the model's own)")
    p.add_argument("--no-normalize", action="store_true", help="keep raw vectors (dot product instead of cosine)")
    p.add_argument("--query-length", type=int, help="colbert: query tokens (default 32, padded with [MASK])")
    p.add_argument("--document-length", type=int, help="colbert: document tokens (default: the checkpoint's, 180)")
    p.add_argument("--no-query-expansion", action="store_true", help="colbert: do not pad queries with [MASK]")
    p.add_argument("--embedding-size", type=int, help="colbert: projection size for a plain encoder (default 128)")
    p.add_argument("--top-k", type=int, help="documents retrieved per query (default: the suite's, 1000)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: a GPU when one is visible)")
    p.add_argument("--cache-dir", help="where document embeddings are cached in shards (default: OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="do not cache document embeddings")
    p.add_argument("--trust-remote-code", action="store_true", help="let the checkpoint run its own code")
    p.add_argument("--no-unpad", action="store_true", help="ModernBERT: padded HF forward (docs/encoding.md)")
    p.add_argument("--overwrite", action="store_true", help="recompute everything, replacing results in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mbert_retrieval.catalog import beir_folders_suite, load_index_spec, load_suite, suites_holding
    from mbert_retrieval.config import BM25Config, EncoderConfig, EvalConfig, FusionConfig
    from mbert_retrieval.core.errors import ConfigError
    from mbert_retrieval.flows.evaluate import run_eval
    from mbert_retrieval.results.tables import markdown_table

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
    top_k = args.top_k or suite.top_k
    cache_dir = None if args.no_cache else str(Path(args.cache_dir or Path(args.out) / "cache"))
    if args.index_dir:
        if args.fuse or args.spec or args.model == "bm25":
            raise ConfigError("--index-dir scores a built index: leave out --fuse, --spec and --model bm25")
    elif bool(args.model) == bool(args.fuse):
        raise ConfigError("give either --model (a model, or bm25) or --fuse SOURCES")
    try:
        bm25 = BM25Config.preset(args.bm25_preset or "mteb")
        if args.bm25_k1 is not None or args.bm25_b is not None:
            bm25 = BM25Config(
                k1=bm25.k1 if args.bm25_k1 is None else args.bm25_k1, b=bm25.b if args.bm25_b is None else args.bm25_b
            )
        fusion = None
        if args.fuse:
            weights = None
            if args.fuse_weights:
                try:
                    weights = [float(w) for w in args.fuse_weights.split(",")]
                except ValueError:
                    raise ConfigError(
                        f"--fuse-weights: not a comma-separated list of numbers: {args.fuse_weights!r}"
                    ) from None
            fusion = FusionConfig(
                sources=[s.strip() for s in args.fuse.split(",") if s.strip()],
                method=args.fuse_method,
                k=args.rrf_k,
                weights=weights,
                normalisation=args.fuse_norm,
            )
        cfg = EvalConfig(
            suite=suite,
            datasets=names,
            split=args.split,
            data_dir=args.data_dir,
            download=args.download,
            bm25=bm25,
            fusion=fusion,
            encoder=None
            if fusion or (args.index_dir and not args.model)
            else EncoderConfig(
                model=args.model,
                batch_size=args.batch_size,
                max_seq_length=args.max_seq_length,
                query_prompt=args.query_prompt,
                document_prompt=args.document_prompt,
                normalize=False if args.no_normalize else None,
                device=args.device,
                trust_remote_code=args.trust_remote_code,
                unpad=False if args.no_unpad else None,
                kind=args.kind,
                query_length=args.query_length,
                document_length=args.document_length,
                query_expansion=False if args.no_query_expansion else None,
                embedding_size=args.embedding_size,
            ),
            index=load_index_spec(args.spec) if args.spec else None,
            index_dir=args.index_dir,
            top_k=top_k,
            out=args.out,
            cache_dir=cache_dir,
        )
    except Exception as e:  # pydantic.ValidationError, kept lazy
        from pydantic import ValidationError

        if isinstance(e, ValidationError):
            problems = [
                f"--{str(err['loc'][-1]).replace('_', '-')}: {err['msg'].removeprefix('Value error, ')}"
                if err["loc"]
                else err["msg"].removeprefix("Value error, ")
                for err in e.errors()
            ]
            raise ConfigError("invalid option " + "; ".join(problems)) from None
        raise
    if args.engine == "mteb":
        from mbert_retrieval.retrieval.mteb import run_eval_mteb as run_eval
    results = run_eval(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    print(markdown_table(results))
    print(f"\nresults: {Path(args.out) / 'results.json'}  runs: {Path(args.out) / 'runs'}/", file=sys.stderr)
    return 0


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


def _add_train(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_cmd_train)
    v = sub.add_parser(
        "validate",
        help="validate recipe, suite or index spec YAML files",
        description="Check each file (all of them, also after a bad one): an `ok` line per good file, an "
        "`error:` line per bad one; exit 1 if any is bad.",
    )
    v.add_argument("files", nargs="+", help="YAML files (their folder or content says what they are)")
    v.set_defaults(func=_cmd_validate)


EXPORT_EXAMPLES = """\
examples:
  # a ColBERT trained here (a sentence-transformers 6 save) for PyLate 1.6 users
  mbert-retrieval export out/scifact-colbert/model --format pylate --out out/scifact-colbert-pylate
  # then, in an environment with pylate==1.6.0:
  python -c "from pylate import models; models.ColBERT('out/scifact-colbert-pylate')"
"""


def _add_export(sub: argparse._SubParsersAction) -> None:
    from mbert_retrieval.encoders.export import EXPORT_HELP

    p = sub.add_parser(
        "export",
        help="write a ColBERT model in another library's layout (PyLate 1.6)",
        description=EXPORT_HELP.replace("\n", " "),
        epilog=EXPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a multi-vector model folder or hub id (sentence-transformers 6, PyLate, Stanford)")
    p.add_argument("--format", choices=["pylate"], default="pylate", help="the layout to write (default pylate)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder at DIR")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from mbert_retrieval.encoders.export import export_pylate

    out = export_pylate(args.model, args.out, overwrite=args.overwrite)
    print(f"PyLate model: {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
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


def _cmd_validate(args: argparse.Namespace) -> int:
    from mbert_retrieval.catalog import validate_file

    failed = 0
    for f in args.files:  # every file is checked: one `ok` or `error:` line each
        try:
            what = validate_file(f)
        except MbertRetrievalError as e:
            failed += 1
            message = str(e)  # names the file already (as given, or as a Path writes it)
            named = message.startswith((f, os.path.normpath(f)))
            print(f"error: {message if named else f'{f}: {message}'}", file=sys.stderr)
            continue
        print(f"ok  {f}  ({what})")
    return 1 if failed else 0


def _add_ls(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ls",
        help="list the shipped suites (with their datasets), recipes and index specs",
        description="List what can be named instead of a path: the shipped suites (`eval --suite`) with their "
        "datasets, the recipes (`train`) and the index specs (`--spec`, `--index`).",
    )
    p.set_defaults(func=_cmd_ls)


def _columns(rows: list[list[str]]) -> list[str]:
    """``rows`` (of equal length) as lines of left-aligned columns, each as wide as its longest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cmd_ls(args: argparse.Namespace) -> int:
    from mbert_retrieval.catalog import (
        list_index_specs,
        list_recipes,
        list_suites,
        load_index_spec,
        load_recipe_by_name,
        load_suite,
    )
    from mbert_retrieval.core.types import plural

    suites = [(name, path, load_suite(path)) for name, path in list_suites().items()]
    width = max((len(d.name) for *_, suite in suites for d in suite.datasets), default=0)
    for name, path, suite in suites:  # dataset names padded alike in every suite
        print(f"suite {name}  ({path})")
        print(textwrap.indent(textwrap.fill(suite.description, 96), "  "))
        for d in suite.datasets:
            flags = [f"split={d.split}"]
            if d.subsets:
                flags.append(plural(len(d.subsets), "subset"))
            if d.ignore_identical_ids:
                flags.append("ignore_identical_ids")
            print(f"    {d.name:<{width}}  {' '.join(flags)}")
    print()
    recipes = [(name, load_recipe_by_name(str(path))) for name, path in list_recipes().items()]
    rows = [[f"recipe {n}", f"kind={r.kind}", f"loss={r.loss.name}", r.description] for n, r in recipes]
    print("\n".join(_columns(rows)))
    print()
    specs = [(name, load_index_spec(path)) for name, path in list_index_specs().items()]
    print("\n".join(_columns([[f"index {n}", f"kind={s.index.kind}", s.description] for n, s in specs])))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbert-retrieval",
        description="ModernBERT retrieval toolkit: train, index and evaluate single-vector and ColBERT retrievers.",
        epilog="Run `mbert-retrieval COMMAND --help` for a command's options and examples.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_log_options(parser, default=False)
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let checkpoints whose weights are only pickle files (pytorch_model.bin, *.pt) load, with torch's "
        "weights_only reader; only for files you trust (the same as MBERT_RETRIEVAL_ALLOW_PICKLE=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_eval(sub)
    _add_train(sub)
    add_index_parsers(sub)
    add_report_parsers(sub)
    add_train_parsers(sub)
    add_doctor_parsers(sub)
    add_quickstart_parsers(sub)
    _add_export(sub)
    _add_ls(sub)
    for command in _subcommands(parser):
        _add_log_options(command, default=argparse.SUPPRESS)  # `eval ... -q` as well as `-q eval ...`
        command.formatter_class = HelpFormatter
    return parser


def _add_log_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """-v / -q. On subcommands their default is SUPPRESS, so an unset flag there leaves the top-level one."""
    group = parser.add_argument_group("logging")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (commands, and actions such as ``index build``), each once."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += [child, *_subcommands(child)]
    return found


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbose else "%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    if not verbose:
        # Third-party chatter (load reports, tokenizer hints) stays quiet unless asked for.
        from mbert_retrieval.encoders.backend import set_quiet

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        set_quiet(True)
        for name in ("sentence_transformers", "faiss"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _sigterm_as_interrupt() -> None:
    """SIGTERM (``kill``, a scheduler's time limit) takes the Ctrl-C path: clean-up handlers run,
    locks are released, temporary copies removed. Only in the main thread (signal's rule)."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `train RECIPE --dry-run key=value`: argparse fills the overrides positional once, before the option;
    # key=value words after an option are overrides too. Anything else stays an error, as parse_args says.
    if (
        extra
        and getattr(args, "overrides", None) is not None
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    for note in getattr(args, "deprecations", None) or []:
        log.warning("note: %s", note)
    _sigterm_as_interrupt()
    previous = os.environ.get(ALLOW_PICKLE_ENV)
    if args.allow_pickle:  # read by checkpoint.check_checkpoint wherever a model is loaded
        os.environ[ALLOW_PICKLE_ENV] = "1"
    try:
        return int(args.func(args) or 0)
    except MbertRetrievalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, quota, permissions where no atomic writer caught it (trainer saves)
        if e.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {e.filename or ''}: cannot write: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished datasets and embedding shards are kept, run again to resume", file=sys.stderr)
        return 130
    finally:
        if args.allow_pickle:
            if previous is None:
                os.environ.pop(ALLOW_PICKLE_ENV, None)
            else:
                os.environ[ALLOW_PICKLE_ENV] = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
