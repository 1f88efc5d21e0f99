"""``mbert-retrieval train``: a recipe in, a trained model out. The only module that knows trainer
arguments and losses.

Dense models train with sentence-transformers' ``SentenceTransformerTrainer`` and its losses; ColBERT
models with its ``MultiVectorEncoderTrainer`` and multi-vector losses (the recipe names are PyLate's:
``contrastive``, ``cached_contrastive``, ``distillation``; each maps to the sentence-transformers loss
that computes the same thing, see ``make_loss``). Output folder::

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
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mbert_retrieval.core.checkpoint import check_checkpoint
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.io import write_json, write_lines, write_text
from mbert_retrieval.core.lock import output_lock_if_main
from mbert_retrieval.core.types import plural
from mbert_retrieval.recipes import Recipe, dump_recipe

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
            f"the recipe was written for {plural(recipe.training.num_devices, 'device')} "
            f"(global batch {t.batch_size * t.gradient_accumulation_steps * recipe.training.num_devices}); "
            f"here {world_size}: raise gradient_accumulation_steps to keep the global batch, "
            "but in-batch negatives per forward pass stay per device"
        )
    return summary


# -- checkpoints --------------------------------------------------------------------------------
# The HF trainer writes checkpoint-N in place (weights, optimizer, RNG, trainer_state.json), so a run
# killed mid-save leaves a folder that looks like a checkpoint. Ours are marked complete only after
# the trainer has written everything: COMPLETE_MARKER lists every file with its size. Resume takes the
# newest checkpoint whose marker matches its files; unmarked or mismatching ones are renamed to
# ``incomplete-checkpoint-N`` (never used, never rotated). Rotation (save_total_limit) is ours too, and
# runs only after the new checkpoint is marked, so the last complete checkpoint is never deleted first.
COMPLETE_MARKER = "checkpoint-complete.json"
CHECKPOINT_PREFIX = "checkpoint-"


def _checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX) or not name[len(CHECKPOINT_PREFIX) :].isdigit():
        return None
    return int(name[len(CHECKPOINT_PREFIX) :])


def mark_checkpoint_complete(folder: Path) -> None:
    """Record every file of a finished checkpoint with its size (written atomically, last)."""
    files = {
        str(f.relative_to(folder)): f.stat().st_size
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != COMPLETE_MARKER
    }
    write_json(folder / COMPLETE_MARKER, {"step": _checkpoint_step(folder), "files": files})


def checkpoint_is_complete(folder: Path) -> bool:
    """A marker naming this step, every listed file present at its recorded size, and a readable
    ``trainer_state.json`` at the same global step."""
    try:
        marker = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        files = marker["files"]
        if marker.get("step") != _checkpoint_step(folder) or state.get("global_step") != marker["step"]:
            return False
        if not any(name.endswith((".safetensors", ".bin")) for name in files):
            return False
        return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    found = [(step, p) for p in folder.iterdir() if p.is_dir() and (step := _checkpoint_step(p)) is not None]
    return [p for _, p in sorted(found) if checkpoint_is_complete(p)]


def quarantine_incomplete(folder: Path) -> list[Path]:
    """Rename every checkpoint-N that is not complete to incomplete-checkpoint-N[-k]; return the new paths."""
    moved = []
    if not folder.is_dir():
        return moved
    for p in sorted(folder.iterdir()):
        if p.is_dir() and _checkpoint_step(p) is not None and not checkpoint_is_complete(p):
            target, k = folder / f"incomplete-{p.name}", 1
            while target.exists():
                target, k = folder / f"incomplete-{p.name}-{k}", k + 1
            os.replace(p, target)
            log.warning("%s is incomplete (a save was interrupted): moved to %s, not used", p, target.name)
            moved.append(target)
    return moved


def rotate_checkpoints(folder: Path, keep: int, protect: Path | None = None) -> None:
    """Delete the oldest complete checkpoints beyond ``keep`` (never ``protect``, the best one)."""
    done = complete_checkpoints(folder)
    for p in done[: max(0, len(done) - keep)]:
        if protect is None or p.resolve() != protect.resolve():
            shutil.rmtree(p, ignore_errors=True)


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
    """A ``SentenceTransformer`` (dense) or a ``MultiVectorEncoder`` ColBERT for the recipe's base encoder."""
    import torch

    torch.manual_seed(recipe.seed)
    m = recipe.model
    base = str(Path(m.base).expanduser()) if Path(m.base).expanduser().exists() else m.base
    check_checkpoint(base)  # no code named in modules.json, no pickle-only weights
    if recipe.kind == "dense":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.base.modules import Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling

        if (Path(base) / "modules.json").is_file() or not Path(base).exists():
            model = SentenceTransformer(base)
        else:  # a plain encoder: add the recipe's pooling explicitly
            transformer = Transformer(base, max_seq_length=m.max_seq_length)
            pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=m.pooling)
            model = SentenceTransformer(modules=[transformer, pooling])
        if m.max_seq_length:
            model.max_seq_length = m.max_seq_length
        if m.query_prompt or m.document_prompt:
            model.prompts = {"query": m.query_prompt or "", "document": m.document_prompt or ""}
        return model
    from mbert_retrieval.encoders.colbert import build_colbert

    return build_colbert(
        base,
        query_length=m.query_length,
        document_length=m.document_length,
        embedding_size=m.embedding_size,
        query_expansion=m.query_expansion,
        seed=recipe.seed,
    )


def load_train_data(recipe: Recipe):
    from mbert_retrieval.data import training

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
        from sentence_transformers.sentence_transformer import losses

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
    from sentence_transformers.multi_vector_encoder import losses as mv_losses

    # PyLate's Contrastive / CachedContrastive / Distillation used temperature 1, i.e. scale 1 (the dense
    # `scale` default of 20 applies to ColBERT only when the recipe sets it).
    scale = cfg.scale if "scale" in cfg.model_fields_set else 1.0
    if name == "contrastive":
        return mv_losses.MultiVectorMultipleNegativesRankingLoss(
            model, scale=scale, gather_across_devices=cfg.gather_across_devices
        )
    if name == "cached_contrastive":
        return mv_losses.CachedMultiVectorMultipleNegativesRankingLoss(
            model, scale=scale, mini_batch_size=cfg.mini_batch_size, gather_across_devices=cfg.gather_across_devices
        )
    return mv_losses.MultiVectorDistillKLDivLoss(model, similarity_fct=minmax_maxsim(model))


def minmax_maxsim(model) -> Any:
    """MaxSim scores of each query's candidates, min-max normalised per query: PyLate's ``Distillation``
    (``normalize_scores=True``, its default, which the ModernBERT paper's ColBERT recipe used) scales the
    student's scores this way before the softmax; sentence-transformers' KL loss does not by itself."""
    from functools import partial

    from sentence_transformers.multi_vector_encoder.scoring.colbert import _colbert_kd_scores

    def scores(queries, documents, queries_mask=None, documents_mask=None):
        raw = partial(_colbert_kd_scores, model.similarity_pairwise)(
            queries, documents, queries_mask=queries_mask, documents_mask=documents_mask
        )
        low, high = raw.min(dim=1, keepdim=True).values, raw.max(dim=1, keepdim=True).values
        return (raw - low) / (high - low + 1e-8)

    scores.__name__ = "minmax_maxsim"
    return scores


def make_evaluator(recipe: Recipe):
    """nDCG@10 on a local BEIR set during training (the best checkpoint is kept): cosine for dense
    models, exact MaxSim for ColBERT (sentence-transformers' IR evaluator and its multi-vector one);
    ``None`` without ``data.eval``. Both score the whole (small) corpus exactly, so keep it small."""
    e = recipe.data.eval
    if e is None:
        return None
    from mbert_retrieval.data.beir import load_beir_folder

    ds = load_beir_folder(e.beir, e.split)
    qids = list(ds.queries)[: e.max_queries] if e.max_queries else list(ds.queries)
    kwargs = {
        "queries": {q: ds.queries[q] for q in qids},
        "corpus": dict(zip(ds.corpus_ids, ds.corpus_texts, strict=True)),
        "relevant_docs": {q: {d for d, r in ds.qrels[q].items() if r >= 1} for q in qids},
        "ndcg_at_k": [10],
        "mrr_at_k": [10],
        "map_at_k": [100],
        "accuracy_at_k": [1],
        "precision_recall_at_k": [100],
        "name": "eval",
        "batch_size": recipe.training.batch_size,
    }
    if recipe.kind == "dense":
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

        return InformationRetrievalEvaluator(**kwargs)
    from sentence_transformers.multi_vector_encoder.evaluation import MultiVectorInformationRetrievalEvaluator

    return MultiVectorInformationRetrievalEvaluator(**kwargs)


def best_metric_name(recipe: Recipe) -> str:
    """The trainer's name for the evaluator's nDCG@10 (what the best checkpoint is chosen by)."""
    return "eval_cosine_ndcg@10" if recipe.kind == "dense" else "eval_maxsim_ndcg@10"


# -- model card ----------------------------------------------------------------------------------
CARD_EVAL_START = "<!-- mbert-retrieval:eval:start -->"
CARD_EVAL_END = "<!-- mbert-retrieval:eval:end -->"


def model_card(
    recipe: Recipe,
    *,
    batch: dict[str, Any],
    rows: int,
    columns: list[str],
    seconds: float,
    log_history: list[dict[str, Any]],
    best_checkpoint: str | None = None,
) -> str:
    """The README.md of a trained model: recipe (resolved YAML), data, batch semantics, training
    time, evaluation during training, and a section ``eval_card_section`` fills in later."""
    d = recipe.data.train
    where = d.path or f"{d.hub_id}" + (f" ({d.subset})" if d.subset else "")
    losses = [row for row in log_history if "loss" in row]
    evals = [row for row in log_history if any(k.endswith("ndcg@10") for k in row)]
    steps = max((int(row.get("step", 0)) for row in log_history), default=0)
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description or "",
        "",
        f"Trained with `mbert-retrieval train` ({recipe.kind}, loss `{recipe.loss.name}`) from `{recipe.model.base}`.",
        "",
        "## Data",
        "",
        f"- source `{d.source}`: {where}" + (f", split {d.split}" if d.source == "beir-qrels" else ""),
        f"- {rows:,} training rows, columns {', '.join(columns)}" + (f" (first {d.max_rows:,})" if d.max_rows else ""),
        "",
        "## Batch",
        "",
        *[f"- {k.replace('_', ' ')}: {v}" for k, v in batch.items()],
        *([f"- recipe intent: {recipe.intent}"] if recipe.intent else []),
        "",
        "## Training",
        "",
        f"- {steps} optimizer steps in {seconds / 60:.1f} min ({seconds:.0f} s wall time)",
        f"- learning rate {recipe.training.learning_rate:g}, warmup {recipe.training.warmup_ratio:g}, "
        f"schedule {recipe.training.lr_scheduler}, seed {recipe.seed}",
    ]
    if losses:
        lines.append(
            f"- loss: first logged {losses[0]['loss']:.4f} (step {losses[0]['step']}), last "
            f"{losses[-1]['loss']:.4f} (step {losses[-1]['step']})"
        )
    lines += ["", "## Evaluation during training", ""]
    if evals:
        data_eval = recipe.data.eval
        assert data_eval is not None
        lines += [
            f"nDCG@10 on `{data_eval.beir}` ({data_eval.split}), exact search:",
            "",
            "| step | nDCG@10 |",
            "|---:|---:|",
        ]
        for row in evals:
            value = next(v for k, v in row.items() if k.endswith("ndcg@10"))
            lines.append(f"| {row.get('step')} | {value:.4f} |")
        if best_checkpoint:
            lines += ["", f"Kept: the best checkpoint ({Path(best_checkpoint).name})."]
    else:
        lines.append("None (the recipe has no `data.eval`).")
    lines += [
        "",
        "## Evaluation",
        "",
        CARD_EVAL_START,
        "Not evaluated yet: `mbert-retrieval eval ... --model THIS_FOLDER --out OUT`, then "
        "`mbert-retrieval card THIS_FOLDER --eval OUT` records the numbers here.",
        CARD_EVAL_END,
        "",
        "## Recipe (resolved)",
        "",
        "```yaml",
        dump_recipe(recipe).rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def eval_card_section(results: dict[str, Any], source: str) -> str:
    """Markdown for an eval pipeline's ``results.json``: one row per dataset, the main metric first."""
    metrics = results.get("metric_names") or sorted({m for v in results["metrics"].values() for m in v})
    index = results.get("index", {}).get("name", "?")
    lines = [
        f"Suite `{results.get('suite')}`, index `{index}` (results: `{source}`):",
        "",
        "| dataset | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for name, values in results["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" if m in values else "—" for m in metrics) + " |")
    return "\n".join(lines)


def record_eval_in_card(model_dir: str | Path, eval_out: str | Path) -> Path:
    """Put the numbers of ``eval_out/results.json`` (an eval of this model) into the model card's
    Evaluation section, replacing what an earlier call put there. Returns the card's path."""
    from mbert_retrieval.core.errors import DataError

    model_dir, eval_out = Path(model_dir), Path(eval_out)
    card = model_dir / "README.md"
    results_path = eval_out / "results.json" if eval_out.is_dir() else eval_out
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(results_path, "no eval results here (run `mbert-retrieval eval` first)") from None
    except json.JSONDecodeError as e:
        raise DataError(results_path, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not card.is_file():
        raise DataError(card, "no model card (not a folder written by `mbert-retrieval train`)")
    text = card.read_text(encoding="utf-8")
    if CARD_EVAL_START not in text or CARD_EVAL_END not in text:
        raise DataError(card, "model card has no mbert-retrieval Evaluation section")
    model = str(results.get("model", ""))
    if model and Path(model).expanduser().resolve() != model_dir.resolve():
        raise ConfigError(f"{results_path} evaluates {model}, not {model_dir}")
    head, rest = text.split(CARD_EVAL_START, 1)
    _, tail = rest.split(CARD_EVAL_END, 1)
    section = eval_card_section(results, str(results_path))
    write_text(card, f"{head}{CARD_EVAL_START}\n{section}\n{CARD_EVAL_END}{tail}")
    return card


def trainer_classes(kind: str) -> tuple[type, type]:
    """The sentence-transformers trainer and its arguments class for a model kind."""
    if kind == "dense":
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        return SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments

    return MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments


LABEL_COLUMNS = ("label", "labels", "score", "scores")


def column_prompts(model, columns: list[str]) -> dict[str, str]:
    """The model's query prompt for the first column, its document prompt for the others (labels aside):
    the sentence-transformers trainers apply only the prompts they are given, so without this a ColBERT
    would train without the ``[Q] ``/``[D] `` markers it is evaluated with (PyLate's collator put them in)."""
    prompts = getattr(model, "prompts", None) or {}
    query = prompts.get("query") or ""
    document = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), "")
    texts = [c for c in columns if c not in LABEL_COLUMNS]
    found = {c: (query if i == 0 else document) for i, c in enumerate(texts)}
    return {c: p for c, p in found.items() if p}


def train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Run the recipe; return the folder of the final model (``output_dir/model``). ``progress``
    False hides the trainer's progress bars (its log lines stay in ``train_log.jsonl``)."""
    with output_lock_if_main(recipe.output_dir):  # one writer per output_dir (rank 0 under torchrun)
        return _train(recipe, resume=resume, overwrite=overwrite, progress=progress)


def _train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    from sentence_transformers.base.sampler import BatchSamplers

    trainer_cls, args_cls = trainer_classes(recipe.kind)
    out = Path(recipe.output_dir)
    final = out / "model"
    if final.exists() and not (overwrite or resume):
        raise ConfigError(f"{final} exists: pass --overwrite to train again, or choose another output_dir")
    checkpoints = out / "checkpoints"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    resume_from = None
    if resume:
        if rank == 0:
            quarantine_incomplete(checkpoints)
        done = complete_checkpoints(checkpoints)
        if not done:
            raise ConfigError(f"--resume: no complete checkpoint in {checkpoints}")
        resume_from = done[-1]
        log.info("resuming from %s", resume_from)
    elif any(checkpoints.glob(f"{CHECKPOINT_PREFIX}*")):
        if not overwrite:
            raise ConfigError(
                f"{checkpoints} holds checkpoints of an earlier run: pass --resume to continue it, "
                "or --overwrite to start over"
            )
        if rank == 0:
            shutil.rmtree(checkpoints)
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
    negatives = sum(1 for c in train_data.column_names if c.startswith("negative"))
    if negatives and recipe.loss.name in ("mnrl", "cached_mnrl", "contrastive", "cached_contrastive"):
        summary["hard_negatives_per_row"] = negatives
        summary["candidates_per_query"] = summary["in_batch_candidates_per_query"] * (1 + negatives)
        log.info(
            "with %d hard negative(s) per row: %d candidates per query (positives and negatives of the batch)",
            negatives,
            summary["candidates_per_query"],
        )
    loss = make_loss(recipe, model)
    evaluator = make_evaluator(recipe)
    use_cpu, bf16, fp16 = _device_precision(recipe)
    t = recipe.training
    eval_steps = recipe.data.eval.steps if recipe.data.eval else None
    strategy = "steps" if (t.save_steps or eval_steps) else "epoch"
    args = args_cls(
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
        save_total_limit=None,  # rotation is ours: only after the new checkpoint is marked complete
        eval_strategy=strategy if evaluator is not None else "no",
        eval_steps=eval_steps if evaluator is not None and strategy == "steps" else None,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model=best_metric_name(recipe) if evaluator is not None else None,
        greater_is_better=True,
        seed=recipe.seed,
        data_seed=recipe.seed,
        ddp_backend="gloo" if use_cpu and world_size > 1 else None,
        report_to="none",
        disable_tqdm=not progress,
        prompts=column_prompts(model, train_data.column_names) or None,
    )

    class Trainer(trainer_cls):
        """Marks each checkpoint complete once the trainer has written all of it, then rotates."""

        def _save_checkpoint(self, model, trial):  # the trainer's (private, stable) checkpoint hook
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
                mark_checkpoint_complete(folder)
                best = self.state.best_model_checkpoint
                rotate_checkpoints(folder.parent, t.save_total_limit, Path(best) if best else None)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_data,
        loss=loss,
        evaluator=evaluator,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    if not trainer.is_world_process_zero():
        return final  # rank 0 writes the log and the model
    write_lines(out / "train_log.jsonl", [json.dumps(row) for row in trainer.state.log_history])

    tmp = Path(tempfile.mkdtemp(prefix=".model.", suffix=".tmp", dir=out))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
    try:
        model.save(str(tmp))
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
        generated = tmp / "README.md"  # the library's own card: kept below ours, its front matter first
        theirs = generated.read_text(encoding="utf-8") if generated.is_file() else ""
        front = ""
        if theirs.startswith("---\n") and "\n---\n" in theirs[4:]:
            end = theirs.index("\n---\n", 4) + 5
            front, theirs = theirs[:end], theirs[end:]
        below = f"\n---\n\n*Card generated by the training library:*\n\n{theirs.lstrip()}" if theirs.strip() else ""
        write_text(generated, front + card + below)
        old = None
        if final.exists():  # keep the previous model until the new one is in place
            old = out / f".model.old.{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("model written to %s", final)
    return final
