"""The trainer for a recipe: sentence-transformers' ``SentenceTransformerTrainer`` (dense) or
``MultiVectorEncoderTrainer`` (ColBERT), with its checkpoints marked complete once written and rotated
only then, and the evaluator it runs during training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mbert_retrieval.recipes import Recipe
from mbert_retrieval.training.arguments import column_prompts, training_arguments
from mbert_retrieval.training.checkpoints import CHECKPOINT_PREFIX, mark_checkpoint_complete, rotate_checkpoints
from mbert_retrieval.training.losses import make_loss


def trainer_classes(kind: str) -> tuple[type, type]:
    """The sentence-transformers trainer and its arguments class for a model kind."""
    if kind == "dense":
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        return SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments

    return MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments


class MarkedCheckpoints:
    """Trainer mixin: marks each checkpoint complete once the trainer has written all of it, then rotates
    (keeping ``keep_checkpoints`` complete ones, never the best)."""

    keep_checkpoints: int

    def _save_checkpoint(self, model, trial):  # the trainer's (private, stable) checkpoint hook
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            mark_checkpoint_complete(folder)
            best = self.state.best_model_checkpoint
            rotate_checkpoints(folder.parent, self.keep_checkpoints, Path(best) if best else None)


def build_trainer(
    recipe: Recipe, model: Any, train_data: Any, *, output_dir: Path, world_size: int, progress: bool
) -> Any:
    """The trainer of ``model`` on ``train_data`` with the recipe's loss, arguments and evaluator;
    checkpoints in ``output_dir``."""
    trainer_cls, args_cls = trainer_classes(recipe.kind)
    loss = make_loss(recipe, model)
    evaluator = make_evaluator(recipe)
    args = training_arguments(
        recipe,
        args_cls,
        output_dir=output_dir,
        evaluate=evaluator is not None,
        world_size=world_size,
        progress=progress,
        prompts=column_prompts(model, train_data.column_names) or None,
    )
    trainer = type("Trainer", (MarkedCheckpoints, trainer_cls), {"keep_checkpoints": recipe.training.save_total_limit})
    return trainer(model=model, args=args, train_dataset=train_data, loss=loss, evaluator=evaluator)


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
