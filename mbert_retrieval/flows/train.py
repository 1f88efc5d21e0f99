"""``mbert-retrieval train``: a recipe in, a trained model out. This module is the flow (the steps of a
run, in order); the trainer, its arguments, the losses, the checkpoints and the model card are in
``mbert_retrieval.training``.

Dense models train with sentence-transformers' ``SentenceTransformerTrainer`` and its losses; ColBERT
models with its ``MultiVectorEncoderTrainer`` and multi-vector losses (the recipe names are PyLate's:
``contrastive``, ``cached_contrastive``, ``distillation``; each maps to the sentence-transformers loss
that computes the same thing, see ``training.losses.make_loss``). Output folder::

    OUTPUT_DIR/recipe.resolved.yaml   the recipe as run (after overrides)
    OUTPUT_DIR/checkpoints/           trainer checkpoints, each marked complete (resume with --resume)
    OUTPUT_DIR/train_log.jsonl        the trainer's log history
    OUTPUT_DIR/model/                 the final (or best) model, written to a temp folder and renamed
    OUTPUT_DIR/model/README.md        model card: recipe, data, batch, time, eval numbers

Under ``torchrun`` every rank trains (DDP, gloo on CPU); rank 0 alone writes files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from mbert_retrieval.core.distributed import leave_process_group
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.io import (
    recover_interrupted_swap,
    remove_stale_staging,
    staging_dir,
    write_lines,
    write_text,
)
from mbert_retrieval.core.lock import output_lock_if_main
from mbert_retrieval.core.types import plural
from mbert_retrieval.recipes import Recipe, dump_recipe
from mbert_retrieval.training.card import model_card, write_model_card
from mbert_retrieval.training.checkpoints import prepare_checkpoints
from mbert_retrieval.training.data import load_train_data
from mbert_retrieval.training.model import build_model
from mbert_retrieval.training.trainer import build_trainer

__all__ = ["batch_summary", "train"]

log = logging.getLogger(__name__)

CONTRASTIVE_LOSSES = ("mnrl", "cached_mnrl", "contrastive", "cached_contrastive")


def batch_summary(recipe: Recipe, world_size: int = 1) -> dict[str, Any]:
    """What one optimizer step sees: the numbers people get wrong when moving between machines."""
    t = recipe.training
    per_forward = t.batch_size * (world_size if recipe.loss.gather_across_devices else 1)
    summary = {
        "devices": world_size,
        "per_device_batch": t.batch_size,
        "gradient_accumulation": t.gradient_accumulation_steps,
        "global_batch": t.batch_size * t.gradient_accumulation_steps * world_size,
        "in_batch_candidates_per_query": per_forward,
    }
    if recipe.loss.name.startswith("cached"):
        summary["cached_mini_batch"] = recipe.loss.mini_batch_size
    if recipe.training.num_devices and recipe.training.num_devices != world_size:
        summary["note"] = (
            f"the recipe was written for {plural(recipe.training.num_devices, 'device')} "
            f"(global batch {t.batch_size * t.gradient_accumulation_steps * recipe.training.num_devices}); "
            f"here {world_size}: raise gradient_accumulation_steps to keep the global batch, "
            "but in-batch negatives per forward pass stay per device"
        )
    return summary


def train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Run the recipe; return the folder of the final model (``output_dir/model``). ``progress``
    False hides the trainer's progress bars (its log lines stay in ``train_log.jsonl``)."""
    with output_lock_if_main(recipe.output_dir):  # one writer per output_dir (rank 0 under torchrun)
        final = _train(recipe, resume=resume, overwrite=overwrite, progress=progress)
    leave_process_group()  # torchrun: every rank waits for rank 0's model, then leaves the group
    return final


def _train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """One training run, step by step (under the output lock): check the output folder, train, and on
    rank 0 write the log and publish the model."""
    out = Path(recipe.output_dir)
    final = out / "model"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    resume_from = _prepare_output(recipe, final, resume=resume, overwrite=overwrite, rank=rank)
    summary = _log_batch(recipe, world_size)

    model = build_model(recipe)
    train_data = load_train_data(recipe)
    log.info("training rows: %d (%s)", len(train_data), ", ".join(train_data.column_names))
    _count_hard_negatives(recipe, train_data.column_names, summary)
    trainer = build_trainer(
        recipe, model, train_data, output_dir=out / "checkpoints", world_size=world_size, progress=progress
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    if not trainer.is_world_process_zero():
        return final  # rank 0 writes the log and the model
    write_lines(out / "train_log.jsonl", [json.dumps(row) for row in trainer.state.log_history])
    card = model_card(
        recipe,
        batch=summary,
        rows=len(train_data),
        columns=list(train_data.column_names),
        seconds=seconds,
        log_history=trainer.state.log_history,
        best_checkpoint=trainer.state.best_model_checkpoint,
    )
    if resume_from is not None:
        card = card.replace(" s wall time)", f" s wall time of the run resumed from {resume_from.name})", 1)
    _publish_model(model, card, final)
    log.info("model written to %s", final)
    return final


def _prepare_output(recipe: Recipe, final: Path, *, resume: bool, overwrite: bool, rank: int) -> Path | None:
    """Refuse an existing model without ``--overwrite``/``--resume``, settle the checkpoints (see
    ``prepare_checkpoints``), write the resolved recipe; return the checkpoint to resume from."""
    out = final.parent
    if rank == 0:  # a publish killed between its renames, or its staging folder, from an earlier run
        recover_interrupted_swap(final)
        remove_stale_staging(final)
    if final.exists() and not (overwrite or resume):
        raise ConfigError(f"{final} exists: pass --overwrite to train again, or choose another output_dir")
    resume_from = prepare_checkpoints(out / "checkpoints", resume=resume, overwrite=overwrite, rank=rank)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_text(out / "recipe.resolved.yaml", dump_recipe(recipe))
    return resume_from


def _log_batch(recipe: Recipe, world_size: int) -> dict[str, Any]:
    """``batch_summary`` for this run, logged (its note, if any, as a warning)."""
    summary = batch_summary(recipe, world_size)
    log.info("batch: %s", ", ".join(f"{k} {v}" for k, v in summary.items() if k != "note"))
    if "note" in summary:
        log.warning("%s", summary["note"])
    return summary


def _count_hard_negatives(recipe: Recipe, columns: list[str], summary: dict[str, Any]) -> None:
    """With a contrastive loss, hard-negative columns add candidates per query: record (and log) how many."""
    negatives = sum(1 for c in columns if c.startswith("negative"))
    if negatives and recipe.loss.name in CONTRASTIVE_LOSSES:
        summary["hard_negatives_per_row"] = negatives
        summary["candidates_per_query"] = summary["in_batch_candidates_per_query"] * (1 + negatives)
        log.info(
            "with %d hard negative(s) per row: %d candidates per query (positives and negatives of the batch)",
            negatives,
            summary["candidates_per_query"],
        )


def _publish_model(model: Any, card: str, final: Path) -> None:
    """Save ``model`` and its ``card`` in a staging folder beside ``final``, then rename it onto ``final``
    (the previous model is kept until the new one is in place; nothing is left behind on failure)."""
    with staging_dir(final) as tmp:
        model.save(str(tmp))
        write_model_card(tmp, card)
