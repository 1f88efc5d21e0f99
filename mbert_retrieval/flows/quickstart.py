"""``mbert-retrieval quickstart``: the whole toolkit end to end, offline, on a CPU, in minutes.

Orchestration only: every stage is a library call, and its outputs are the ones the other commands
write and read. The stages are module-level functions over one ``Run`` (the folder, the settings, the
stages recorded so far, the start time), listed in order in the table ``STAGES``:

1. ``data``: ``data.stdlib.build_stdlib_splits`` -> ``OUT/data/python-stdlib/{train,test}`` (BEIR
   folders: docstring first sentence -> code without the docstring, split by package);
2. ``model``: ``encoders.modernbert.build_modernbert`` (a small random ModernBERT, a BPE tokenizer
   trained on the train split) -> ``OUT/base-model``; skipped when ``model=`` names a checkpoint;
3. ``bm25`` and the untrained baselines (the base model as a dense retriever with FAISS flat, and as
   a ColBERT retriever scored by exact MaxSim, the scores every ColBERT index approximates):
   ``flows.evaluate.run_eval`` -> ``OUT/eval/{bm25,untrained-dense,untrained-colbert}``;
4. ``train-dense`` / ``train-colbert``: ``flows.train.train`` with ``recipes/quickstart-{dense,colbert}.yaml``
   -> ``OUT/train/{dense,colbert}/model`` (with ``--minutes``, the stage ``plan`` chooses their steps first);
5. ``index-faiss``: ``flows.index_build.build_index`` (trained dense model, test corpus, ``faiss-flat``) ->
   ``OUT/indexes/dense-faiss``, searchable with ``mbert-retrieval search``;
6. ``eval-dense`` / ``eval-colbert``: ``flows.evaluate.run_eval`` (FAISS flat; PLAID, whose index is kept
   in ``OUT/eval/colbert/indices/python-stdlib``), then ``hybrid-dense`` / ``hybrid-colbert``: BM25 + each
   trained model, reciprocal rank fusion of their runs;
7. ``OUT/results.json`` + ``OUT/results.md``: one table (nDCG@10, R@100, seconds per stage), and an
   example query searched in both saved indices.

Resumable: ``OUT/quickstart.json`` records each finished stage; a re-run with the same settings
reuses them (``overwrite=True`` recomputes everything), and another setting in the same ``OUT`` is
refused. Every file is written atomically by the library call that writes it; the base model is built
in a temporary sibling folder and renamed into place (``core.io.staging_dir``).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from mbert_retrieval.catalog import load_index_spec, load_recipe_by_name
from mbert_retrieval.config import DatasetSpec, EncoderConfig, EvalConfig, IndexSpecFile, PlaidSpec, SuiteSpec
from mbert_retrieval.core.errors import ConfigError, OutputExistsError
from mbert_retrieval.core.io import remove_stale_staging, staging_dir, write_json, write_text
from mbert_retrieval.core.lock import output_lock
from mbert_retrieval.core.types import plural
from mbert_retrieval.core.versions import versions
from mbert_retrieval.recipes import Recipe

log = logging.getLogger(__name__)

DEFAULT_OUT = "out/quickstart"
DATASET = "python-stdlib"
METRICS = ["nDCG@10", "R@100", "RR@10"]
TOP_K = 100
STATE_FILE = "quickstart.json"
RESULTS_FILE = "results.json"
BAR = 0.10  # the bar: trained beats the same architecture untrained by this much nDCG@10
# PLAID with PyLate 1.6's 8,192 candidates scores them all exactly per query: the whole corpus here, at 88 ms a
# query; 512 candidates (of ~1,450 documents) take 15 ms (measured on 2 CPU cores). 512 / 4 = 128 >= TOP_K, so
# every query gets its 100 hits: scale_with_k (1,024 for k <= 100) is off, to keep the README's measured table.
PLAID_SPEC = IndexSpecFile(
    name="plaid-quickstart",
    description="PLAID (fast-plaid), 512 candidates scored exactly per query",
    index=PlaidSpec(n_full_scores=512, scale_with_k=False),
)
# The untrained ColBERT is scored by exact MaxSim, the scores every ColBERT index approximates (so the
# trained - untrained gain owes nothing to an index's luck), and 4x cheaper than PLAID here (default
# run, 2 CPU cores: exact 10.1 s for encoding + search, PLAID 41.7 s; nDCG@10 15.66 vs 14.97).
UNTRAINED_COLBERT_INDEX = "exact-maxsim"
# What the trained ColBERT's PLAID evaluation stage costs, in units of the untrained exact one (default
# run on a fresh clone, 2 CPU cores: 36.0 s / 11.7 s); used only by --minutes for what is still to come.
PLAID_PER_EXACT = 3.0
INDEX_LABELS = {
    "bm25s": "bm25s",
    "faiss": "FAISS flat",
    "plaid": "PLAID",
    "exact-maxsim": "exact MaxSim",
    "fusion-rrf": "RRF of the two runs",
}
HYBRIDS = {"dense": "hybrid-dense", "colbert": "hybrid-colbert"}  # trained model -> its BM25 + model stage


@dataclass(frozen=True)
class Size:
    """One quickstart size: how much data, which model, how long the texts and the training are."""

    name: str
    description: str
    max_docs: int | None  # stdlib examples kept (None: all)
    model: str  # a key of encoders.modernbert.MODEL_SIZES
    steps: int | None  # training steps of each model (None: the recipes' max_steps)


SIZES = {
    "small": Size("small", "all stdlib examples; 4 x 128 ModernBERT; the recipes' steps", None, "mini", None),
    "tiny": Size("tiny", "900 stdlib examples; 4 x 128 ModernBERT; 20 steps (the test's)", 900, "mini", 20),
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Stages:
    """Finished stages recorded in ``OUT/quickstart.json``: reused on a re-run with the same settings."""

    def __init__(self, out: Path, settings: dict[str, Any], overwrite: bool) -> None:
        self.path = out / STATE_FILE
        self.settings = settings
        self.state: dict[str, Any] = {"settings": settings, "stages": {}}
        if self.path.is_file() and not overwrite:
            try:
                previous = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                previous = None
            if not isinstance(previous, dict) or previous.get("settings") != settings:
                raise OutputExistsError(
                    f"{out} holds a quickstart run with other settings ({self.path}); "
                    "choose another --out or pass --overwrite"
                )
            self.state = previous
        self.reused: list[str] = []

    def run(self, name: str, title: str, fn: Callable[[], dict[str, Any]], done: bool = True) -> dict[str, Any]:
        """Run stage ``name`` unless it finished before (and ``done``: its outputs are still there)."""
        record = self.state["stages"].get(name)
        if record is not None and done:
            log.info("[%s] %s: reused (finished %s)", name, title, record["finished"])
            self.reused.append(name)
            return record
        log.info("[%s] %s", name, title)
        t = time.perf_counter()
        info = fn()
        record = {"seconds": round(time.perf_counter() - t, 2), "finished": _now(), **info}
        self.state["stages"][name] = record
        write_json(self.path, self.state)
        return record


def _suite() -> SuiteSpec:
    return SuiteSpec(
        name="quickstart",
        description="the quickstart's test split: stdlib code search, test packages only",
        metrics=METRICS,
        main_metric="nDCG@10",
        top_k=TOP_K,
        datasets=[DatasetSpec(name=DATASET, folder=f"{DATASET}/test", split="test")],
    )


def _evaluate(
    out: Path, data_dir: Path, encoder: EncoderConfig, index: IndexSpecFile | None, *, overwrite: bool, progress: bool
) -> dict[str, Any]:
    """``run_eval`` on the test split (``data_dir/python-stdlib/test``) into ``out``; the table row's record."""
    cfg = EvalConfig(
        suite=_suite(),
        datasets=[DATASET],
        data_dir=str(data_dir),
        encoder=encoder,
        index=index,
        top_k=TOP_K,
        out=str(out),
        cache_dir=str(out / "cache"),
    )
    return _row_record(cfg, overwrite=overwrite, progress=progress)


def _fuse(out: Path, data_dir: Path, sources: list[Path], *, overwrite: bool, progress: bool) -> dict[str, Any]:
    """Reciprocal rank fusion (k 60) of earlier eval folders' runs, through ``run_eval``; the row's record."""
    from mbert_retrieval.config import FusionConfig

    cfg = EvalConfig(
        suite=_suite(),
        datasets=[DATASET],
        data_dir=str(data_dir),
        fusion=FusionConfig(sources=[str(s) for s in sources], method="rrf"),
        top_k=TOP_K,
        out=str(out),
    )
    return _row_record(cfg, overwrite=overwrite, progress=progress)


def _row_record(cfg: EvalConfig, *, overwrite: bool, progress: bool) -> dict[str, Any]:
    """``run_eval(cfg)`` on the test split; what the table row and the example need from its results."""
    from mbert_retrieval.flows.evaluate import run_eval

    out = Path(cfg.out)
    results = run_eval(cfg, overwrite=overwrite, progress=progress)
    record = results["datasets"][DATASET]
    seconds = record.get("seconds", {})
    return {
        "metrics": results["metrics"][DATASET],
        "results": str(out / "results.json"),
        "run": str(out / record["run"]),
        "n_docs": record["n_docs"],
        "n_queries": record["n_queries"],
        "index": record.get("index"),
        "index_seconds": round(seconds.get("encode_documents", 0.0) + seconds.get("index", 0.0), 2),
        "search_seconds": round(seconds.get("encode_queries", 0.0) + seconds.get("search", 0.0), 2),
    }


def _encoder(model: str, recipe: Recipe) -> EncoderConfig:
    """The recipe's text lengths, so the untrained and the trained model read the same tokens."""
    m = recipe.model
    if recipe.kind == "dense":
        return EncoderConfig(kind="dense", model=model, max_seq_length=m.max_seq_length)
    return EncoderConfig(
        kind="colbert",
        model=model,
        query_length=m.query_length,
        document_length=m.document_length,
        embedding_size=m.embedding_size,
        query_expansion=m.query_expansion,
    )


def _train(recipe_name: str, base: str, out: Path, data: Path, steps: int, overwrite: bool, progress: bool) -> dict:
    from mbert_retrieval.flows.train import train

    overrides = [f"model.base={base}", f"output_dir={out}", f"data.train.path={data}", f"training.max_steps={steps}"]
    recipe = load_recipe_by_name(recipe_name, overrides)
    resume = not overwrite and not (out / "model").exists() and any((out / "checkpoints").glob("checkpoint-*"))
    if resume:
        log.info("resuming %s from its last checkpoint in %s", recipe_name, out / "checkpoints")
    model = train(recipe, resume=resume, overwrite=True, progress=progress)
    history = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [row["loss"] for row in history if "loss" in row]
    return {
        "model": str(model),
        "recipe": f"recipes/{recipe_name}.yaml",
        "steps": recipe.training.max_steps,
        "batch_size": recipe.training.batch_size,
        "learning_rate": recipe.training.learning_rate,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }


def _model_facts(path: Path) -> dict[str, Any]:
    """What the table says about the base model: read from its ``config.json``."""
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    keys = (
        "model_type",
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "local_attention",
        "global_attn_every_n_layers",
        "vocab_size",
        "max_position_embeddings",
    )
    return {k: cfg.get(k) for k in keys}


# A training step (the mean of a dense and a ColBERT one) costs as much as encoding this many test
# documents with the untrained model. Measured on a busy 2-core CPU (tiny size: 20 dense steps
# 102.8 s, 20 ColBERT steps 73.4 s, 319 documents encoded in 5.2 s): both sides slow down alike on a
# busy machine, so the ratio carries over. Used only by --minutes.
STEP_PER_ENCODED_DOC = 270.0
MIN_STEPS, MAX_EPOCHS = 10, 4


def plan_steps(minutes: float, elapsed: float, stages: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Training steps per model so the whole run takes about ``minutes``: what is left of the budget
    after the stages so far and the (estimated) evaluations still to come, divided by an estimated
    step time, ``STEP_PER_ENCODED_DOC`` x this machine's measured seconds per encoded test document.
    At least ``MIN_STEPS``, at most ``MAX_EPOCHS`` epochs of 32 pairs."""
    untrained = stages["eval-untrained-dense"]
    per_doc = untrained["index_seconds"] / max(1, untrained["n_docs"])
    step = STEP_PER_ENCODED_DOC * per_doc
    evals_left = 2 * stages["eval-untrained-dense"]["seconds"]  # eval-dense, and index-faiss encodes again
    evals_left += PLAID_PER_EXACT * stages["eval-untrained-colbert"]["seconds"]  # eval-colbert, with PLAID
    left = minutes * 60 - elapsed - evals_left
    train_rows = stages["data"]["counts"]["train"]["queries"]
    cap = max(MIN_STEPS, MAX_EPOCHS * train_rows // 32)
    steps = int(min(cap, max(MIN_STEPS, left / 2 / step))) if step > 0 else settings["dense_steps"]
    log.info(
        "%.0f s of the %g minutes left for training: %d steps per model (estimated %.2f s per step)",
        left,
        minutes,
        steps,
        step,
    )
    return {"dense_steps": steps, "colbert_steps": steps, "seconds_per_step": round(step, 3), "left": round(left)}


def describe_model(facts: dict[str, Any]) -> str:
    if facts.get("model_type") != "modernbert" or "num_hidden_layers" not in facts:
        return str(facts.get("name", "?"))
    return (
        f"ModernBERT {facts['num_hidden_layers']} layers x {facts['hidden_size']} "
        f"(local window {facts['local_attention']}, global every {facts['global_attn_every_n_layers']}, RoPE), "
        f"BPE vocabulary {facts['vocab_size']:,}"
    )


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    if s < 100:
        return f"{s:.1f} s"
    minutes, seconds = divmod(round(s), 60)
    return f"{minutes} min {seconds:02d} s"


ROWS = [  # (row key, label, train stage, eval stage)
    ("bm25", "BM25 (bm25s, MTEB settings)", None, "bm25"),
    ("untrained-dense", "dense, untrained", None, "eval-untrained-dense"),
    ("dense", "dense, trained (quickstart-dense)", "train-dense", "eval-dense"),
    ("untrained-colbert", "ColBERT, untrained", None, "eval-untrained-colbert"),
    ("colbert", "ColBERT, trained (quickstart-colbert)", "train-colbert", "eval-colbert"),
    ("hybrid-dense", "BM25 + dense, trained (RRF)", None, "hybrid-dense"),
    ("hybrid-colbert", "BM25 + ColBERT, trained (RRF)", None, "hybrid-colbert"),
]


def results_table(results: dict[str, Any]) -> str:
    """The quickstart's one table: a row per retriever, metrics x100 and seconds per stage."""
    lines = [
        "| retriever | index | nDCG@10 | R@100 | train | encode + index | search |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        m = row["metrics"]
        lines.append(
            f"| {row['label']} | {row['index']} | {100 * m['nDCG@10']:.2f} | {100 * m['R@100']:.2f} | "
            f"{_fmt_seconds(row.get('train_seconds')) or '-'} | {_fmt_seconds(row['index_seconds'])} | "
            f"{_fmt_seconds(row['search_seconds'])} |"
        )
    return "\n".join(lines)


def _gains(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    gains = {}
    for kind in ("dense", "colbert"):
        if kind in rows and f"untrained-{kind}" in rows:
            gain = rows[kind]["metrics"]["nDCG@10"] - rows[f"untrained-{kind}"]["metrics"]["nDCG@10"]
            gains[kind] = {"nDCG@10_gain": round(gain, 4), "bar": BAR, "passed": gain >= BAR}
    return gains


def _answer_rank(run_path: str, qid: str, relevant: list[str]) -> int | None:
    """Rank (1-based, trec_eval order) of the first relevant document in a saved run, None if absent."""
    from mbert_retrieval.results.runs import read_run

    ranked = sorted(read_run(run_path).get(qid, {}).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    return next((i for i, (doc, _) in enumerate(ranked, start=1) if doc in relevant), None)


def pick_example(ds: Any, bm25_run: dict[str, dict[str, float]], hybrid_run: dict[str, dict[str, float]]) -> str:
    """The example query, by a rule fixed in advance: the first test query (file order) whose answer BM25
    misses in its top 10 and the BM25 + ColBERT hybrid finds there; the first query if there is none."""

    def in_top10(run: dict[str, dict[str, float]], qid: str) -> bool:
        ranked = sorted(run.get(qid, {}).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]
        return any(ds.qrels[qid].get(doc, 0) >= 1 for doc, _ in ranked)

    picked = (q for q in ds.queries if not in_top10(bm25_run, q) and in_top10(hybrid_run, q))
    return next(picked, next(iter(ds.queries)))


def _example(out: Path, data: Path, stages: dict[str, Any]) -> dict[str, Any]:
    """The example query (``pick_example``), searched in the saved FAISS and PLAID indices (top 3 hits
    of each), and where each retriever's run ranked its answer."""
    from mbert_retrieval.data.beir import load_beir_folder
    from mbert_retrieval.results.runs import read_run
    from mbert_retrieval.retrieval.search import SearchIndex

    ds = load_beir_folder(data / "test", "test")
    text = dict(zip(ds.corpus_ids, ds.corpus_texts, strict=True))
    qid = pick_example(ds, read_run(stages["bm25"]["run"]), read_run(stages["hybrid-colbert"]["run"]))
    relevant = sorted(d for d, r in ds.qrels[qid].items() if r >= 1)
    example: dict[str, Any] = {
        "query_id": qid,
        "query": ds.queries[qid],
        "rule": "the first test query whose answer BM25 misses in its top 10 and BM25 + ColBERT (RRF) finds",
        "relevant": relevant,
        "hits": {},
    }
    places = {"dense": stages["index-faiss"]["path"], "colbert": stages["eval-colbert"]["plaid_index"]}
    for name, folder in places.items():
        with SearchIndex.load(folder) as index:
            hits = index.search(ds.queries[qid], k=3)[0]
        example["hits"][name] = [
            {"rank": h.rank, "id": h.id, "score": round(h.score, 4), "relevant": h.id in relevant, "text": text[h.id]}
            for h in hits
        ]
    example["answer_rank"] = {label: _answer_rank(stages[stage]["run"], qid, relevant) for _, label, _, stage in ROWS}
    return example


def format_example(example: dict[str, Any]) -> str:
    lines = [
        f'example query ({example["query_id"]}): "{example["query"]}"',
        f"  answer: {', '.join(example['relevant'])}",
    ]
    for name, hits in example["hits"].items():
        lines.append(f"  {'dense (FAISS)' if name == 'dense' else 'ColBERT (PLAID)'}:")
        for h in hits:
            first = next((ln.strip() for ln in h["text"].splitlines() if ln.strip()), "")
            mark = "*" if h["relevant"] else " "
            lines.append(f"   {mark}{h['rank']}. {h['score']:8.3f}  {h['id']:<40.40}  {first[:60]}")
    lines.append("  (* = the function whose docstring the query is)")
    ranks = [f"{label.split(' (')[0]} {rank or '>' + str(TOP_K)}" for label, rank in example["answer_rank"].items()]
    lines.append("  the answer's rank: " + "; ".join(ranks))
    return "\n".join(lines)


def run_quickstart(
    out: str | Path = DEFAULT_OUT,
    *,
    size: str = "small",
    model: str | None = None,
    minutes: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return the results (also in ``OUT/results.json``).

    One run at a time per ``out`` (``lock.output_lock``)."""
    if size not in SIZES:
        raise ConfigError(f"unknown quickstart size {size!r}; choose one of {', '.join(SIZES)}")
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {minutes}")
    out = Path(out).expanduser().absolute()  # indices record their encoder by this path
    with output_lock(out, command="quickstart"):
        return _run_quickstart(out, SIZES[size], model, minutes, overwrite, progress)


# --------------------------------------------------------------------------------------------
# The stages: module-level functions over one ``Run``, driven by the table ``STAGES``


@dataclass
class Run:
    """One quickstart run: its folder and settings, the recipes, the stages so far (``OUT/quickstart.json``)
    and when it started. Every stage function reads what earlier stages made from ``stages``."""

    out: Path
    size: Size
    model: str | None  # a checkpoint named by --model, or None: the stage ``model`` builds one
    minutes: float | None
    overwrite: bool
    progress: bool
    t_start: float
    dense_recipe: Recipe
    colbert_recipe: Recipe
    settings: dict[str, Any]
    stages: _Stages

    @property
    def data(self) -> Path:
        """The BEIR folders of the stdlib set: ``OUT/data/python-stdlib/{train,test}``."""
        return self.out / "data" / DATASET

    @property
    def base_dir(self) -> Path:
        """Where the stage ``model`` writes the small ModernBERT."""
        return self.out / "base-model"

    @property
    def evals(self) -> Path:
        return self.out / "eval"

    @property
    def faiss_dir(self) -> Path:
        return self.out / "indexes" / "dense-faiss"

    def recorded(self, stage: str) -> dict[str, Any]:
        """The record of a finished stage."""
        return self.stages.state["stages"][stage]

    @property
    def base(self) -> str:
        """The base model every stage trains and evaluates: the built one, or ``--model`` (a local folder
        by its absolute path, which indices record; a hub id as given)."""
        if self.model is None:
            return self.recorded("model")["path"]
        local = Path(self.model).expanduser()
        return str(local.absolute()) if local.exists() else self.model

    @property
    def base_facts(self) -> dict[str, Any]:
        """What the table says about the base model (``_model_facts``; the name alone for a hub id)."""
        if self.model is None:
            return self.recorded("model")["facts"]
        local = Path(self.model).expanduser()
        return (
            {"name": self.model, **_model_facts(local)} if (local / "config.json").is_file() else {"name": self.model}
        )

    def steps(self, kind: str) -> int:
        """Training steps of the ``kind`` model: the ``--minutes`` plan's, else the settings'."""
        source = self.recorded("plan") if self.minutes is not None else self.settings
        return source[f"{kind}_steps"]

    def trained(self, kind: str) -> str:
        return self.recorded(f"train-{kind}")["model"]

    def recipe(self, kind: str) -> Recipe:
        return self.dense_recipe if kind == "dense" else self.colbert_recipe

    def evaluate(self, name: str, encoder: EncoderConfig, index: IndexSpecFile | None) -> dict[str, Any]:
        """``run_eval`` into ``OUT/eval/NAME`` (``_evaluate``)."""
        return _evaluate(
            self.evals / name, self.out / "data", encoder, index, overwrite=self.overwrite, progress=self.progress
        )

    def finished(self, name: str) -> bool:
        """Whether ``OUT/eval/NAME`` holds a finished evaluation."""
        return (self.evals / name / "results.json").is_file()


def build_data(run: Run) -> dict[str, Any]:
    """``data``: the stdlib code-search set, split by package."""
    from mbert_retrieval.data.stdlib import build_stdlib_splits

    splits = build_stdlib_splits(run.data, max_docs=run.size.max_docs, progress=run.progress)
    log.info("%s", splits.summary())
    return {"counts": splits.counts, "folder": str(run.data)}


def build_model(run: Run) -> dict[str, Any]:
    """``model``: a small random ModernBERT and a BPE tokenizer trained on the train split's texts, built
    in a temporary sibling of ``OUT/base-model`` and renamed into place (``core.io.staging_dir``)."""
    from mbert_retrieval.data.beir import load_beir_folder
    from mbert_retrieval.encoders.modernbert import MODEL_SIZES, build_modernbert

    train_ds = load_beir_folder(run.data / "train", "train")
    texts = [*train_ds.queries.values(), *train_ds.corpus_texts]
    remove_stale_staging(run.base_dir)
    with staging_dir(run.base_dir) as tmp:
        build_modernbert(tmp, texts, **MODEL_SIZES[run.size.model], model_max_length=512, word_level_text=True)
    facts = _model_facts(run.base_dir)
    log.info("%s: %s", run.base_dir, describe_model(facts))
    return {"path": str(run.base_dir), "facts": facts, "tokenizer_texts": len(texts)}


def eval_bm25(run: Run) -> dict[str, Any]:
    """``bm25``: BM25 (bm25s) on the test split."""
    return run.evaluate("bm25", EncoderConfig(model="bm25"), None)


def eval_untrained(run: Run, kind: str) -> dict[str, Any]:
    """``eval-untrained-KIND``: the base model with the recipe's text lengths, dense on FAISS flat,
    ColBERT by exact MaxSim."""
    index = load_index_spec("faiss-flat" if kind == "dense" else UNTRAINED_COLBERT_INDEX)
    return run.evaluate(f"untrained-{kind}", _encoder(run.base, run.recipe(kind)), index)


def plan_training(run: Run) -> dict[str, Any]:
    """``plan`` (with ``--minutes``): training steps that fit the time budget (``plan_steps``)."""
    assert run.minutes is not None
    return plan_steps(run.minutes, time.perf_counter() - run.t_start, run.stages.state["stages"], run.settings)


def train_model(run: Run, kind: str) -> dict[str, Any]:
    """``train-KIND``: ``recipes/quickstart-KIND.yaml`` on the base model -> ``OUT/train/KIND/model``."""
    folder = run.out / "train" / kind
    return _train(
        f"quickstart-{kind}", run.base, folder, run.data / "train", run.steps(kind), run.overwrite, run.progress
    )


def build_faiss(run: Run) -> dict[str, Any]:
    """``index-faiss``: ``index_build.build_index`` of the test corpus with the trained dense model."""
    from mbert_retrieval.flows.index_build import build_index

    result = build_index(
        run.trained("dense"),
        run.data / "test",
        "faiss-flat",
        run.faiss_dir,
        max_seq_length=run.dense_recipe.model.max_seq_length,
        overwrite=True,
        progress=run.progress,
    )
    assert result is not None  # one process: rank 0
    return {"path": str(result.path), "n_docs": result.n_docs, "dim": result.dim, "factory": result.factory}


def eval_dense(run: Run) -> dict[str, Any]:
    """``eval-dense``: the trained dense model on FAISS flat."""
    encoder = _encoder(run.trained("dense"), run.dense_recipe)
    return run.evaluate("dense", encoder, load_index_spec("faiss-flat"))


def eval_colbert(run: Run) -> dict[str, Any]:
    """``eval-colbert``: the trained ColBERT on PLAID (``PLAID_SPEC``); its index is kept for the example."""
    record = run.evaluate("colbert", _encoder(run.trained("colbert"), run.colbert_recipe), PLAID_SPEC)
    return {**record, "plaid_index": str(run.evals / "colbert" / "indices" / DATASET)}


def fuse_with_bm25(run: Run, kind: str) -> dict[str, Any]:
    """``hybrid-KIND``: reciprocal rank fusion of the BM25 run and the trained ``kind`` model's run."""
    sources = [run.evals / "bm25", run.evals / kind]
    return _fuse(run.evals / HYBRIDS[kind], run.out / "data", sources, overwrite=run.overwrite, progress=run.progress)


@dataclass(frozen=True)
class Stage:
    """One row of ``STAGES``: its name in ``quickstart.json``, what the log prints when it starts, the
    function that runs it, whether its outputs are still there (else a recorded stage runs again), and
    whether this run has it at all."""

    name: str
    title: str | Callable[[Run], str]
    fn: Callable[[Run], dict[str, Any]]
    done: Callable[[Run], bool] = lambda run: True
    when: Callable[[Run], bool] = lambda run: True

    def title_for(self, run: Run) -> str:
        return self.title if isinstance(self.title, str) else self.title(run)


def _finished(name: str) -> Callable[[Run], bool]:
    return lambda run: run.finished(name)


def _train_stage(kind: str) -> Stage:
    return Stage(
        f"train-{kind}",
        lambda run: f"train the {kind} model: recipes/quickstart-{kind}.yaml, {run.steps(kind)} steps",
        partial(train_model, kind=kind),
        done=lambda run: (run.out / "train" / kind / "model").is_dir(),
    )


def _hybrid_stage(kind: str) -> Stage:
    return Stage(
        HYBRIDS[kind],
        f"BM25 + the trained {kind} model, reciprocal rank fusion of their runs",
        partial(fuse_with_bm25, kind=kind),
        done=_finished(HYBRIDS[kind]),
    )


STAGES = [  # in the order they run
    Stage(
        "data", "build the stdlib code-search set", build_data, done=lambda run: (run.data / "dataset.json").is_file()
    ),
    Stage(
        "model",
        "a small ModernBERT + BPE tokenizer trained on the train split",
        build_model,
        done=lambda run: run.base_dir.is_dir(),
        when=lambda run: run.model is None,
    ),
    Stage("bm25", "BM25 on the test split", eval_bm25, done=_finished("bm25")),
    Stage(
        "eval-untrained-dense",
        "the untrained model as a dense retriever (mean pooling), FAISS flat",
        partial(eval_untrained, kind="dense"),
        done=_finished("untrained-dense"),
    ),
    Stage(
        "eval-untrained-colbert",
        "the untrained model as ColBERT (seeded 128-dim projection), exact MaxSim",
        partial(eval_untrained, kind="colbert"),
        done=_finished("untrained-colbert"),
    ),
    Stage(
        "plan",
        lambda run: f"training steps that fit {run.minutes:g} minutes",
        plan_training,
        when=lambda run: run.minutes is not None,
    ),
    _train_stage("dense"),
    _train_stage("colbert"),
    Stage(
        "index-faiss",
        "FAISS index of the test corpus (trained dense model)",
        build_faiss,
        done=lambda run: run.faiss_dir.is_dir(),
    ),
    Stage("eval-dense", "evaluate the trained dense model", eval_dense, done=_finished("dense")),
    Stage("eval-colbert", "evaluate the trained ColBERT model, PLAID index", eval_colbert, done=_finished("colbert")),
    _hybrid_stage("dense"),
    _hybrid_stage("colbert"),
]


def _run_quickstart(
    out: Path, sz: Size, model: str | None, minutes: float | None, overwrite: bool, progress: bool
) -> dict[str, Any]:
    """Start the run, run each stage of ``STAGES`` it has (reusing finished ones), then write the results."""
    run = _start(out, sz, model, minutes, overwrite, progress)
    for stage in STAGES:
        if stage.when(run):
            run.stages.run(stage.name, stage.title_for(run), partial(stage.fn, run), stage.done(run))
    results = _results(run)
    write_json(out / RESULTS_FILE, results)
    write_text(out / "results.md", render_markdown(results) + "\n")
    return results


def _start(out: Path, sz: Size, model: str | None, minutes: float | None, overwrite: bool, progress: bool) -> Run:
    """The run's settings (what a re-run must match to reuse stages); with ``overwrite``, the earlier
    outputs removed; the stages recorded so far loaded."""
    t_start = time.perf_counter()
    dense_recipe = load_recipe_by_name("quickstart-dense")
    colbert_recipe = load_recipe_by_name("quickstart-colbert")
    settings = {
        "size": sz.name,
        "model": model,
        "minutes": minutes,
        "python": sys.version.split()[0],
        "dense_steps": sz.steps or dense_recipe.training.max_steps,
        "colbert_steps": sz.steps or colbert_recipe.training.max_steps,
    }
    if overwrite:
        for sub in ("data", "base-model", "eval", "train", "indexes", STATE_FILE):
            target = out / sub
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out, settings, overwrite)
    return Run(out, sz, model, minutes, overwrite, progress, t_start, dense_recipe, colbert_recipe, settings, stages)


def _rows(recorded: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows (``ROWS``): each retriever's metrics, index and seconds, from the stage records."""
    rows = []
    for key, label, train_stage, eval_stage in ROWS:
        rec = recorded[eval_stage]
        row = {
            "key": key,
            "label": label,
            "index": INDEX_LABELS.get(rec["index"], rec["index"] or "?"),
            "metrics": rec["metrics"],
            "train_seconds": recorded[train_stage]["seconds"] if train_stage else None,
            "index_seconds": rec["index_seconds"],
            "search_seconds": rec["search_seconds"],
            "results": rec["results"],
        }
        if train_stage:
            row["train"] = {k: recorded[train_stage][k] for k in ("recipe", "steps", "batch_size", "learning_rate")}
        rows.append(row)
    return rows


def _results(run: Run) -> dict[str, Any]:
    """What ``OUT/results.json`` holds: the settings, the base model, the rows, the gains, the stage
    times, the outputs and the example query."""
    recorded = run.stages.state["stages"]
    rows = _rows(recorded)
    facts = run.base_facts
    example = _example(run.out, run.data, recorded)
    total = time.perf_counter() - run.t_start
    return {
        "quickstart": run.settings,
        "base_model": {"path": run.base, **facts, "description": describe_model(facts)},
        "data": {"folder": str(run.data), "counts": recorded["data"]["counts"]},
        "metric_names": METRICS,
        "top_k": TOP_K,
        "rows": rows,
        "gains": _gains({row["key"]: row for row in rows}),
        "stages": {k: v["seconds"] for k, v in recorded.items()},
        "reused_stages": run.stages.reused,
        "seconds_total": round(total, 1),
        "outputs": outputs(run.out, recorded),
        "example": example,
        "versions": versions(),
        "finished": _now(),
    }


def outputs(out: Path, stages: dict[str, Any]) -> dict[str, str]:
    return {
        "data": str(out / "data" / DATASET),
        "base model": stages["model"]["path"] if "model" in stages else "",
        "dense model": stages["train-dense"]["model"],
        "ColBERT model": stages["train-colbert"]["model"],
        "FAISS index": stages["index-faiss"]["path"],
        "PLAID index": stages["eval-colbert"]["plaid_index"],
        "eval results": str(out / "eval"),
        "results": str(out / RESULTS_FILE),
    }


def format_outputs(results: dict[str, Any]) -> str:
    """Where everything was written, and the commands that use it next."""
    o = results["outputs"]
    width = max(len(k) for k in o)
    lines = ["written:"] + [f"  {k:<{width}}  {v}" for k, v in o.items() if v]
    lines += [
        "next:",
        f'  mbert-retrieval search --index-dir {o["FAISS index"]} "parse a configuration file" -k 5',
        f'  mbert-retrieval search --index-dir {o["PLAID index"]} "parse a configuration file" -k 5',
        f"  mbert-retrieval train recipes/quickstart-dense.yaml model.base={results['base_model']['path']} "
        f"data.train.path={o['data']}/train output_dir=DIR   # train again, changing any key",
    ]
    return "\n".join(lines)


def _hybrid_line(rows: list[dict[str, Any]]) -> str:
    """One line on what the hybrid rows show (BM25 and a trained model find different answers)."""
    score = {r["key"]: 100 * r["metrics"]["nDCG@10"] for r in rows}
    best = max(("hybrid-dense", "hybrid-colbert"), key=lambda k: score[k])
    model = best.removeprefix("hybrid-")
    gain = score[best] - max(score["bm25"], score[model])
    verdict = "so they find different answers" if gain > 0 else "no better than the better of the two"
    return (
        f"hybrid: BM25 + {'ColBERT' if model == 'colbert' else 'dense'} (RRF) {score[best]:.2f} against "
        f"{score['bm25']:.2f} and {score[model]:.2f} alone ({gain:+.2f}), {verdict}"
    )


def render_markdown(results: dict[str, Any]) -> str:
    """Table, bar, stage times and the example query, as printed and written to ``results.md``."""
    counts = results["data"]["counts"]
    gains = results["gains"]
    stage_times = ", ".join(f"{k} {_fmt_seconds(v)}" for k, v in results["stages"].items())
    lines = [
        f"python-stdlib code search, test split: {counts['test']['queries']:,} queries over "
        f"{counts['test']['documents']:,} functions and classes of {counts['test']['modules']} packages "
        f"(trained on {counts['train']['queries']:,} pairs from {counts['train']['modules']} other packages)",
        f"base model: {results['base_model']['description']}",
        "",
        results_table(results),
        "",
        "nDCG@10 and R@100 x100 (0.3282 is shown as 32.82); the gains below are on the 0-1 scale.",
        "trained - untrained nDCG@10: "
        + ", ".join(
            f"{k} {v['nDCG@10_gain']:+.4f} ({'passes' if v['passed'] else 'below'} the {v['bar']:.2f} bar)"
            for k, v in gains.items()
        ),
        _hybrid_line(results["rows"]),
        f"stages: {stage_times}",
        f"total: {_fmt_seconds(results['seconds_total'])}"
        + (
            f" ({plural(len(results['reused_stages']), 'stage')} reused from an earlier run)"
            if results["reused_stages"]
            else ""
        ),
    ]
    return "\n".join(lines)


__all__ = [
    "DEFAULT_OUT",
    "SIZES",
    "format_example",
    "format_outputs",
    "render_markdown",
    "results_table",
    "run_quickstart",
]
