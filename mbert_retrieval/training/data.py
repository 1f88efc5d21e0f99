"""The recipe's training rows (``data.train``), from the loaders of ``mbert_retrieval.data.training``."""

from __future__ import annotations

from typing import Any

from mbert_retrieval.recipes import Recipe


def load_train_data(recipe: Recipe) -> Any:
    """The rows of ``data.train`` as a ``datasets.Dataset`` (columns as the recipe's loss expects them)."""
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
