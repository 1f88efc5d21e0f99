"""The model a recipe trains: a ``SentenceTransformer`` for dense recipes (the recipe's pooling added to a
plain encoder), a sentence-transformers ``MultiVectorEncoder`` ColBERT for ColBERT recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mbert_retrieval.core.checkpoint import check_checkpoint
from mbert_retrieval.recipes import Recipe


def build_model(recipe: Recipe) -> Any:
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
