"""The trainer arguments a recipe asks for: device and precision, batch, schedule, when to save and
evaluate, and the prompts each column is trained with. Saving is the trainer's, rotation is ours
(``checkpoints.rotate_checkpoints``, only after a checkpoint is marked complete)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mbert_retrieval.recipes import Recipe

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "score", "scores")


def column_prompts(model: Any, columns: list[str]) -> dict[str, str]:
    """The model's query prompt for the first column, its document prompt for the others (labels aside):
    the sentence-transformers trainers apply only the prompts they are given, so without this a ColBERT
    would train without the ``[Q] ``/``[D] `` markers it is evaluated with (PyLate's collator put them in)."""
    prompts = getattr(model, "prompts", None) or {}
    query = prompts.get("query") or ""
    document = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), "")
    texts = [c for c in columns if c not in LABEL_COLUMNS]
    found = {c: (query if i == 0 else document) for i, c in enumerate(texts)}
    return {c: p for c, p in found.items() if p}


def _device_precision(recipe: Recipe) -> tuple[bool, bool, bool]:
    """(use_cpu, bf16, fp16) for this machine and the recipe's precision."""
    import torch

    cuda = torch.cuda.is_available()
    p = recipe.training.precision
    if p == "auto":
        return (not cuda, cuda and torch.cuda.is_bf16_supported(), False)
    if p in ("bf16", "fp16") and not cuda:
        log.warning("precision %s asked for, but there is no GPU: training in fp32 on the CPU", p)
        return (True, False, False)
    return (not cuda, p == "bf16", p == "fp16")


def best_metric_name(recipe: Recipe) -> str:
    """The trainer's name for the evaluator's nDCG@10 (what the best checkpoint is chosen by)."""
    return "eval_cosine_ndcg@10" if recipe.kind == "dense" else "eval_maxsim_ndcg@10"


def training_arguments(
    recipe: Recipe,
    args_cls: type,
    *,
    output_dir: Path,
    evaluate: bool,
    world_size: int,
    progress: bool,
    prompts: dict[str, str] | None,
) -> Any:
    """``args_cls`` (the trainer's arguments class) filled in from the recipe: checkpoints go to
    ``output_dir``; with ``evaluate`` the evaluator runs when checkpoints are saved and the best one is
    kept at the end; gloo for DDP on CPUs; ``progress`` False hides the progress bars."""
    from sentence_transformers.base.sampler import BatchSamplers

    use_cpu, bf16, fp16 = _device_precision(recipe)
    t = recipe.training
    eval_steps = recipe.data.eval.steps if recipe.data.eval else None
    strategy = "steps" if (t.save_steps or eval_steps) else "epoch"
    return args_cls(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        warmup_ratio=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay,
        bf16=bf16,
        fp16=fp16,
        use_cpu=use_cpu,
        batch_sampler=BatchSamplers.NO_DUPLICATES
        if t.batch_sampler == "no_duplicates"
        else BatchSamplers.BATCH_SAMPLER,
        logging_steps=t.logging_steps,
        save_strategy=strategy,
        save_steps=t.save_steps or eval_steps or 500,
        save_total_limit=None,  # rotation is ours: only after the new checkpoint is marked complete
        eval_strategy=strategy if evaluate else "no",
        eval_steps=eval_steps if evaluate and strategy == "steps" else None,
        load_best_model_at_end=evaluate,
        metric_for_best_model=best_metric_name(recipe) if evaluate else None,
        greater_is_better=True,
        seed=recipe.seed,
        data_seed=recipe.seed,
        ddp_backend="gloo" if use_cpu and world_size > 1 else None,
        report_to="none",
        disable_tqdm=not progress,
        prompts=prompts,
    )
