"""Recipe loss names -> sentence-transformers losses.

Dense: ``mnrl``, ``cached_mnrl``, ``margin_mse``, ``distill_kl`` (sentence-transformers' own). ColBERT: the
names are PyLate's (``contrastive``, ``cached_contrastive``, ``distillation``); each maps to the
sentence-transformers multi-vector loss that computes the same thing.
"""

from __future__ import annotations

from typing import Any

from mbert_retrieval.recipes import Recipe


def make_loss(recipe: Recipe, model: Any) -> Any:
    """The sentence-transformers loss for the recipe's ``loss`` section, bound to ``model``."""
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


def minmax_maxsim(model: Any) -> Any:
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
