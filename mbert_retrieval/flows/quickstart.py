"""``mbert-retrieval quickstart``: the whole toolkit end to end, offline, on a CPU, in minutes.

Orchestration only: every stage is a library call, and its outputs are the ones the other commands
write and read.

1. ``data``: ``data.stdlib.build_stdlib_splits`` -> ``OUT/data/python-stdlib/{train,test}`` (BEIR
   folders: docstring first sentence -> code without the docstring, split by package);
2. ``model``: ``encoders.modernbert.build_modernbert`` (a small random ModernBERT, a BPE tokenizer
   trained on the train split) -> ``OUT/base-model``; skipped when ``model=`` names a checkpoint;
3. ``bm25`` and the untrained baselines (the base model as a dense retriever with FAISS flat, and as
   a ColBERT retriever scored by exact MaxSim, the scores every ColBERT index approximates):
   ``pipeline.run_eval`` -> ``OUT/eval/{bm25,untrained-dense,untrained-colbert}``;
4. ``train-dense`` / ``train-colbert``: ``train.train`` with ``recipes/quickstart-{dense,colbert}.yaml``
   -> ``OUT/train/{dense,colbert}/model``;
5. ``index-faiss``: ``indexing.build_index`` (trained dense model, test corpus, ``faiss-flat``) ->
   ``OUT/indexes/dense-faiss``, searchable with ``mbert-retrieval search``;
6. ``eval-dense`` / ``eval-colbert``: ``pipeline.run_eval`` (FAISS flat; PLAID, whose index is kept
   in ``OUT/eval/colbert/indices/python-stdlib``);
7. ``OUT/results.json`` + ``OUT/results.md``: one table (nDCG@10, R@100, seconds per stage), and an
   example query searched in both saved indices.

Resumable: ``OUT/quickstart.json`` records each finished stage; a re-run with the same settings
reuses them (``overwrite=True`` recomputes everything), and another setting in the same ``OUT`` is
refused. Every file is written atomically by the library call that writes it.
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
from pathlib import Path
from typing import Any

from mbert_retrieval.catalog import load_index_spec, load_recipe_by_name
from mbert_retrieval.config import DatasetSpec, EncoderConfig, EvalConfig, IndexSpecFile, PlaidSpec, SuiteSpec
from mbert_retrieval.core.errors import ConfigError, OutputExistsError
from mbert_retrieval.core.io import write_json, write_text
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
# PLAID with the shipped spec's 8,192 candidates (PyLate 1.6's default) scores them all exactly per query: the
# whole corpus here, at 88 ms a query; 512 candidates (of ~1,450 documents) take 15 ms (measured on 2 CPU cores).
PLAID_SPEC = IndexSpecFile(
    name="plaid-quickstart",
    description="PLAID (fast-plaid), 512 candidates scored exactly per query",
    index=PlaidSpec(n_full_scores=512),
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


def _run_quickstart(
    out: Path, sz: Size, model: str | None, minutes: float | None, overwrite: bool, progress: bool
) -> dict[str, Any]:
    from mbert_retrieval.data.stdlib import build_stdlib_splits
    from mbert_retrieval.encoders.modernbert import MODEL_SIZES

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
    data = out / "data" / DATASET

    def build_data() -> dict[str, Any]:
        splits = build_stdlib_splits(data, max_docs=sz.max_docs, progress=progress)
        log.info("%s", splits.summary())
        return {"counts": splits.counts, "folder": str(data)}

    data_rec = stages.run("data", "build the stdlib code-search set", build_data, (data / "dataset.json").is_file())

    base_dir = out / "base-model"

    def build_model() -> dict[str, Any]:
        from mbert_retrieval.data.beir import load_beir_folder
        from mbert_retrieval.encoders.modernbert import build_modernbert

        train_ds = load_beir_folder(data / "train", "train")
        texts = [*train_ds.queries.values(), *train_ds.corpus_texts]
        tmp = out / ".base-model.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        build_modernbert(tmp, texts, **MODEL_SIZES[sz.model], model_max_length=512, word_level_text=True)
        if base_dir.exists():
            shutil.rmtree(base_dir)
        tmp.rename(base_dir)
        facts = _model_facts(base_dir)
        log.info("%s: %s", base_dir, describe_model(facts))
        return {"path": str(base_dir), "facts": facts, "tokenizer_texts": len(texts)}

    if model is None:
        model_rec = stages.run(
            "model", "a small ModernBERT + BPE tokenizer trained on the train split", build_model, base_dir.is_dir()
        )
        base = model_rec["path"]
        facts = model_rec["facts"]
    else:  # a local folder by its absolute path (indices record it), a hub id as given
        base = str(Path(model).expanduser().absolute()) if Path(model).expanduser().exists() else model
        facts = {"name": model}
        if (Path(model).expanduser() / "config.json").is_file():
            facts = {"name": model, **_model_facts(Path(model).expanduser())}

    evals = out / "eval"

    def evaluation(name: str, encoder: EncoderConfig, index: IndexSpecFile | None) -> Callable[[], dict[str, Any]]:
        return lambda: _evaluate(evals / name, out / "data", encoder, index, overwrite=overwrite, progress=progress)

    def finished(name: str) -> bool:
        return (evals / name / "results.json").is_file()

    stages.run(
        "bm25", "BM25 on the test split", evaluation("bm25", EncoderConfig(model="bm25"), None), finished("bm25")
    )
    stages.run(
        "eval-untrained-dense",
        "the untrained model as a dense retriever (mean pooling), FAISS flat",
        evaluation("untrained-dense", _encoder(base, dense_recipe), load_index_spec("faiss-flat")),
        finished("untrained-dense"),
    )
    stages.run(
        "eval-untrained-colbert",
        "the untrained model as ColBERT (seeded 128-dim projection), exact MaxSim",
        evaluation("untrained-colbert", _encoder(base, colbert_recipe), load_index_spec(UNTRAINED_COLBERT_INDEX)),
        finished("untrained-colbert"),
    )

    if minutes is not None:
        plan = stages.run(
            "plan",
            f"training steps that fit {minutes:g} minutes",
            lambda: plan_steps(minutes, time.perf_counter() - t_start, stages.state["stages"], settings),
        )
    trained: dict[str, str] = {}
    for kind in ("dense", "colbert"):
        folder = out / "train" / kind
        steps = plan[f"{kind}_steps"] if minutes is not None else settings[f"{kind}_steps"]
        rec = stages.run(
            f"train-{kind}",
            f"train the {kind} model: recipes/quickstart-{kind}.yaml, {steps} steps",
            lambda kind=kind, folder=folder, steps=steps: _train(
                f"quickstart-{kind}", base, folder, data / "train", steps, overwrite, progress
            ),
            (folder / "model").is_dir(),
        )
        trained[kind] = rec["model"]

    faiss_dir = out / "indexes" / "dense-faiss"

    def build_faiss() -> dict[str, Any]:
        from mbert_retrieval.flows.index_build import build_index

        result = build_index(
            trained["dense"],
            data / "test",
            "faiss-flat",
            faiss_dir,
            max_seq_length=dense_recipe.model.max_seq_length,
            overwrite=True,
            progress=progress,
        )
        assert result is not None  # one process: rank 0
        return {"path": str(result.path), "n_docs": result.n_docs, "dim": result.dim, "factory": result.factory}

    stages.run("index-faiss", "FAISS index of the test corpus (trained dense model)", build_faiss, faiss_dir.is_dir())
    stages.run(
        "eval-dense",
        "evaluate the trained dense model",
        evaluation("dense", _encoder(trained["dense"], dense_recipe), load_index_spec("faiss-flat")),
        finished("dense"),
    )

    def eval_colbert() -> dict[str, Any]:
        record = evaluation("colbert", _encoder(trained["colbert"], colbert_recipe), PLAID_SPEC)()
        return {**record, "plaid_index": str(evals / "colbert" / "indices" / DATASET)}

    stages.run("eval-colbert", "evaluate the trained ColBERT model, PLAID index", eval_colbert, finished("colbert"))
    for kind, stage in HYBRIDS.items():
        stages.run(
            stage,
            f"BM25 + the trained {kind} model, reciprocal rank fusion of their runs",
            lambda kind=kind, stage=stage: _fuse(
                evals / stage, out / "data", [evals / "bm25", evals / kind], overwrite=overwrite, progress=progress
            ),
            finished(stage),
        )

    recorded = stages.state["stages"]
    rows = []
    by_key = {}
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
        by_key[key] = row

    example = _example(out, data, recorded)
    total = time.perf_counter() - t_start
    results = {
        "quickstart": settings,
        "base_model": {"path": base, **facts, "description": describe_model(facts)},
        "data": {"folder": str(data), "counts": data_rec["counts"]},
        "metric_names": METRICS,
        "top_k": TOP_K,
        "rows": rows,
        "gains": _gains(by_key),
        "stages": {k: v["seconds"] for k, v in recorded.items()},
        "reused_stages": stages.reused,
        "seconds_total": round(total, 1),
        "outputs": outputs(out, recorded),
        "example": example,
        "versions": versions(),
        "finished": _now(),
    }
    write_json(out / RESULTS_FILE, results)
    write_text(out / "results.md", render_markdown(results) + "\n")
    return results


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
