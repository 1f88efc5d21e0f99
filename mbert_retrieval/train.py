"""``mbert-retrieval train``: a recipe in, a trained model out. The only module that knows trainer
arguments and losses.

Dense models train with the sentence-transformers trainer; ColBERT models with the same trainer,
PyLate's losses and ``ColBERTCollator``. Output folder::

    OUTPUT_DIR/recipe.resolved.yaml   the recipe as run (after overrides)
    OUTPUT_DIR/checkpoints/           trainer checkpoints (resume with --resume)
    OUTPUT_DIR/train_log.jsonl        the trainer's log history
    OUTPUT_DIR/model/                 the final (or best) model, written to a temp folder and renamed
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import write_lines, write_text
from .recipes import Recipe, dump_recipe

log = logging.getLogger(__name__)


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
            f"the recipe was written for {recipe.training.num_devices} devices "
            f"(global batch {t.batch_size * t.gradient_accumulation_steps * recipe.training.num_devices}); "
            f"here {world_size}: raise gradient_accumulation_steps to keep the global batch, "
            "but in-batch negatives per forward pass stay per device"
        )
    return summary


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


def build_model(recipe: Recipe):
    """A sentence-transformers model (dense) or a PyLate ColBERT for the recipe's base encoder."""
    import torch

    torch.manual_seed(recipe.seed)
    m = recipe.model
    base = str(Path(m.base).expanduser()) if Path(m.base).expanduser().exists() else m.base
    if recipe.kind == "dense":
        from sentence_transformers import SentenceTransformer, models

        if (Path(base) / "modules.json").is_file() or not Path(base).exists():
            model = SentenceTransformer(base)
        else:  # a plain encoder: add the recipe's pooling explicitly
            transformer = models.Transformer(base, max_seq_length=m.max_seq_length)
            pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode=m.pooling)
            model = SentenceTransformer(modules=[transformer, pooling])
        if m.max_seq_length:
            model.max_seq_length = m.max_seq_length
        if m.query_prompt or m.document_prompt:
            model.prompts = {"query": m.query_prompt or "", "document": m.document_prompt or ""}
        return model
    from pylate import models as pylate_models

    return pylate_models.ColBERT(
        base,
        query_length=m.query_length,
        document_length=m.document_length,
        embedding_size=m.embedding_size,
        do_query_expansion=m.query_expansion,
    )


def load_train_data(recipe: Recipe):
    from .data import training

    d = recipe.data.train
    if d.source == "beir-qrels":
        return training.beir_pairs(d.path, d.split, d.max_rows)
    if d.source == "triples":
        return training.triples(d.path, d.max_rows)
    if d.source == "distillation":
        return training.distillation(d.path, d.n_ways, d.max_rows)
    if d.source == "mldr":
        return training.mldr(
            d.path,
            hub_id=d.hub_id or "Shitao/MLDR",
            language=d.subset or "en",
            num_negatives=d.num_negatives,
            max_rows=d.max_rows,
        )
    if d.source == "hub-triplets":
        return training.hub_triplets(d.hub_id, d.subset, d.max_rows)
    return training.hub_distillation(d.hub_id, d.n_ways, d.max_rows)


def make_loss(recipe: Recipe, model):
    name, cfg = recipe.loss.name, recipe.loss
    if recipe.kind == "dense":
        from sentence_transformers import losses

        if name == "mnrl":
            return losses.MultipleNegativesRankingLoss(
                model, scale=cfg.scale, gather_across_devices=cfg.gather_across_devices
            )
        if name == "cached_mnrl":
            return losses.CachedMultipleNegativesRankingLoss(
                model,
                scale=cfg.scale,
                mini_batch_size=cfg.mini_batch_size,
                gather_across_devices=cfg.gather_across_devices,
            )
        if name == "margin_mse":
            return losses.MarginMSELoss(model)
        return losses.DistillKLDivLoss(model)
    from pylate import losses as pylate_losses

    if name == "contrastive":
        return pylate_losses.Contrastive(model=model, gather_across_devices=cfg.gather_across_devices)
    if name == "cached_contrastive":
        return pylate_losses.CachedContrastive(
            model=model, mini_batch_size=cfg.mini_batch_size, gather_across_devices=cfg.gather_across_devices
        )
    return pylate_losses.Distillation(model=model)


def make_evaluator(recipe: Recipe):
    """Dense: nDCG@10 on a local BEIR set during training (the best checkpoint is kept)."""
    e = recipe.data.eval
    if e is None:
        return None
    if recipe.kind != "dense":
        log.warning("evaluation during training is implemented for dense recipes only; skipped")
        return None
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    from .data.beir import load_beir_folder

    ds = load_beir_folder(e.beir, e.split)
    qids = list(ds.queries)[: e.max_queries] if e.max_queries else list(ds.queries)
    return InformationRetrievalEvaluator(
        queries={q: ds.queries[q] for q in qids},
        corpus=dict(zip(ds.corpus_ids, ds.corpus_texts, strict=True)),
        relevant_docs={q: {d for d, r in ds.qrels[q].items() if r >= 1} for q in qids},
        ndcg_at_k=[10],
        mrr_at_k=[10],
        map_at_k=[100],
        accuracy_at_k=[1],
        precision_recall_at_k=[100],
        name="eval",
        batch_size=recipe.training.batch_size,
    )


def train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Run the recipe; return the folder of the final model (``output_dir/model``)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers

    out = Path(recipe.output_dir)
    final = out / "model"
    if final.exists() and not (overwrite or resume):
        raise ConfigError(f"{final} exists: pass --overwrite to train again, or choose another output_dir")
    checkpoints = out / "checkpoints"
    if resume and not any(checkpoints.glob("checkpoint-*")):
        raise ConfigError(f"--resume: no checkpoint in {checkpoints}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_text(out / "recipe.resolved.yaml", dump_recipe(recipe))
    summary = batch_summary(recipe, world_size)
    log.info("batch: %s", ", ".join(f"{k} {v}" for k, v in summary.items() if k != "note"))
    if "note" in summary:
        log.warning("%s", summary["note"])

    model = build_model(recipe)
    train_data = load_train_data(recipe)
    log.info("training rows: %d (%s)", len(train_data), ", ".join(train_data.column_names))
    loss = make_loss(recipe, model)
    evaluator = make_evaluator(recipe)
    use_cpu, bf16, fp16 = _device_precision(recipe)
    t = recipe.training
    eval_steps = recipe.data.eval.steps if recipe.data.eval else None
    strategy = "steps" if (t.save_steps or eval_steps) else "epoch"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
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
        save_total_limit=t.save_total_limit,
        eval_strategy=strategy if evaluator is not None else "no",
        eval_steps=eval_steps if evaluator is not None and strategy == "steps" else None,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model="eval_eval_cosine_ndcg@10" if evaluator is not None else None,
        greater_is_better=True,
        seed=recipe.seed,
        data_seed=recipe.seed,
        ddp_backend="gloo" if use_cpu and world_size > 1 else None,
        report_to="none",
        disable_tqdm=False,
    )
    collator = None
    if recipe.kind == "colbert":
        from pylate.utils import ColBERTCollator

        collator = ColBERTCollator(model.tokenize)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        loss=loss,
        evaluator=evaluator,
        data_collator=collator,
    )
    trainer.train(resume_from_checkpoint=True if resume else None)
    if not trainer.is_world_process_zero():
        return final  # rank 0 writes the log and the model
    write_lines(out / "train_log.jsonl", [json.dumps(row) for row in trainer.state.log_history])

    tmp = out / ".model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(str(tmp))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    log.info("model written to %s", final)
    return final
