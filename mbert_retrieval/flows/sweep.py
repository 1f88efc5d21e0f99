"""``mbert-retrieval sweep``: one training run per learning rate, each evaluated with the eval
pipeline, the best picked by the mean of the suite's main metric (nDCG@10) over the given datasets
(the ModernBERT paper: NFCorpus, SciFact, TREC-COVID, FiQA).

Layout (``OUTPUT_DIR`` is the recipe's, after overrides)::

    OUTPUT_DIR/lr-<value>/          a normal training output folder (model/, checkpoints/, ...)
    OUTPUT_DIR/lr-<value>/eval/     the eval pipeline's output (results.json, runs/, ...)
    OUTPUT_DIR/sweep.json           every run's metrics, the mean, the pick (rewritten after each run)
    OUTPUT_DIR/sweep.md             the same as a table

Resumable: a learning rate recorded as finished (same datasets) is skipped; a run whose model is
written but not yet evaluated is only evaluated; an interrupted training resumes from its last
complete checkpoint. A sweep folder started with another recipe setting is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.io import write_json, write_text

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
PAPER_DATASETS = ("nfcorpus", "scifact", "trec-covid", "fiqa")


def parse_lrs(text: str) -> list[float]:
    """``"1e-5,2e-5"`` -> ``[1e-05, 2e-05]``; positive, distinct."""
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            lr = float(part)
        except ValueError:
            raise ConfigError(f"--lr: {part!r} is not a number") from None
        if not lr > 0 or not math.isfinite(lr):
            raise ConfigError(f"--lr: {part!r} must be a positive number")
        if lr in values:
            raise ConfigError(f"--lr: {part!r} is given twice")
        values.append(lr)
    if not values:
        raise ConfigError("--lr: give at least one learning rate, e.g. 1e-5,2e-5")
    return values


def lr_label(lr: float) -> str:
    """Folder-safe label: 2e-05 -> ``2e-05``, 0.0001 -> ``0.0001``."""
    return f"{lr:g}"


def _setting_fingerprint(recipe: Any) -> str:
    """The recipe without learning rate and output folder: what every run of a sweep shares."""
    data = recipe.model_dump(mode="json")
    data.pop("output_dir")
    data["training"].pop("learning_rate")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_done(run_dir: Path) -> bool:
    return (run_dir / "model" / "modules.json").is_file()


def run_sweep(
    recipe: str,
    lrs: list[float],
    *,
    overrides: list[str] | None = None,
    datasets: list[str] | None = None,
    suite: str = "beir",
    data_dir: str | None = None,
    download: bool = False,
    split: str | None = None,
    index: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate ``recipe`` at each learning rate; write and return ``sweep.json``'s content."""
    from mbert_retrieval.catalog import load_index_spec, load_recipe_by_name, load_suite
    from mbert_retrieval.config import EncoderConfig, EvalConfig
    from mbert_retrieval.flows.evaluate import run_eval
    from mbert_retrieval.flows.train import train
    from mbert_retrieval.training.card import record_eval_in_card
    from mbert_retrieval.training.checkpoints import complete_checkpoints

    overrides = list(overrides or [])
    base = load_recipe_by_name(recipe, overrides)
    datasets = list(datasets or PAPER_DATASETS)
    suite_spec = load_suite(suite)
    known = {d.name for d in suite_spec.datasets}
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise ConfigError(f"suite {suite_spec.name!r} has no dataset {', '.join(map(repr, unknown))}")
    index_file = load_index_spec(index) if index else None
    out = Path(base.output_dir)
    state = _load_state(out, base, suite_spec, datasets, split, lrs)
    runs: dict[str, Any] = state["runs"]

    for lr in lrs:
        label = lr_label(lr)
        run_dir = out / f"lr-{label}"
        done = runs.get(label)
        if done and done.get("finished") and done.get("datasets") == datasets and _model_done(run_dir):
            log.info("lr %s: finished earlier (mean %s %.4f), skipped", label, state["main_metric"], done["mean"])
            continue
        recipe_lr = load_recipe_by_name(recipe, [*overrides, f"training.learning_rate={lr!r}", f"output_dir={run_dir}"])
        train_seconds = (done or {}).get("train_seconds")
        if not _model_done(run_dir):
            resume = bool(complete_checkpoints(run_dir / "checkpoints"))  # else start over (overwrite)
            log.info("lr %s: training into %s%s", label, run_dir, " (resuming)" if resume else "")
            start = time.perf_counter()
            train(recipe_lr, resume=resume, overwrite=True)
            train_seconds = round(time.perf_counter() - start, 1)
        cfg = EvalConfig(
            suite=suite_spec,
            datasets=datasets,
            split=split,
            data_dir=data_dir,
            download=download,
            encoder=EncoderConfig(model=str(run_dir / "model"), kind=recipe_lr.kind, batch_size=batch_size),
            index=index_file,
            top_k=suite_spec.top_k,
            out=str(run_dir / "eval"),
            cache_dir=str(run_dir / "eval" / "cache"),
        )
        results = run_eval(cfg, progress=progress)
        if not results:  # a torchrun rank other than 0 (training ran on every rank): rank 0 records the run
            continue
        record_eval_in_card(run_dir / "model", run_dir / "eval")
        main = state["main_metric"]
        per_dataset = {key: values[main] for key, values in results["metrics"].items() if key.split(".")[0] in datasets}
        mean = math.fsum(per_dataset.values()) / len(per_dataset)
        runs[label] = {
            "learning_rate": lr,
            "model": str(run_dir / "model"),
            "eval": str(run_dir / "eval"),
            "datasets": datasets,
            "metrics": per_dataset,
            "mean": mean,
            "train_seconds": train_seconds,
            "finished": True,
        }
        _write(out, state)  # rank 0 only: the other ranks skipped this run's bookkeeping above
        log.info("lr %s: mean %s %.4f", label, main, mean)

    if int(os.environ.get("RANK", "0") or 0) == 0:  # one writer of sweep.json under torchrun
        _write(out, state)
    return state


def _load_state(
    out: Path, base: Any, suite_spec: Any, datasets: list[str], split: str | None, lrs: list[float]
) -> dict[str, Any]:
    """``sweep.json`` as an earlier run left it (refused if another recipe setting wrote it), or a fresh
    state, updated with this sweep's recipe, suite, datasets and learning rates."""
    sweep_path = out / SWEEP_FILE
    setting = _setting_fingerprint(base)
    state: dict[str, Any] = {}
    if sweep_path.is_file():
        state = json.loads(sweep_path.read_text(encoding="utf-8"))
        if state.get("setting") != setting:
            raise ConfigError(f"{sweep_path} belongs to a sweep of another recipe setting; choose another output_dir")
    state.update(
        {
            "recipe": base.name,
            "setting": setting,
            "suite": suite_spec.name,
            "datasets": datasets,
            "split": split,
            "main_metric": suite_spec.main_metric,
            "learning_rates": [lr_label(lr) for lr in lrs],
        }
    )
    state.setdefault("runs", {})
    return state


def _write(out: Path, state: dict[str, Any]) -> None:
    finished = {k: v for k, v in state["runs"].items() if v.get("finished") and k in state["learning_rates"]}
    state["best"] = max(finished, key=lambda k: finished[k]["mean"]) if finished else None
    write_json(out / SWEEP_FILE, state)
    write_text(out / "sweep.md", sweep_markdown(state) + "\n")


def sweep_markdown(state: dict[str, Any]) -> str:
    """A table: one row per learning rate, the main metric per dataset and the mean; the pick marked."""
    main, datasets = state["main_metric"], state["datasets"]
    lines = [
        f"# LR sweep: {state['recipe']} ({main}, mean of {', '.join(datasets)})",
        "",
        "| lr | " + " | ".join(datasets) + " | mean | train s |",
        "|---|" + "---:|" * (len(datasets) + 2),
    ]
    for label in state["learning_rates"]:
        run = state["runs"].get(label)
        if not run or not run.get("finished"):
            lines.append(f"| {label} | " + " | ".join("—" for _ in datasets) + " | — | — |")
            continue
        mark = " **(best)**" if label == state.get("best") else ""
        cells = [f"{run['metrics'][d]:.4f}" if d in run["metrics"] else "—" for d in datasets]
        seconds = run.get("train_seconds")
        lines.append(
            f"| {label}{mark} | " + " | ".join(cells) + f" | {run['mean']:.4f} | {seconds if seconds else '—'} |"
        )
    if state.get("best"):
        lines += ["", f"best learning rate: {state['best']} (model: {state['runs'][state['best']]['model']})"]
    return "\n".join(lines)
