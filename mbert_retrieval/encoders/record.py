"""What a manifest records of an encoder, so that it can be rebuilt later (``retrieval.rebuild``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mbert_retrieval.config import EncoderConfig


def recorded_model(model: str) -> str:
    """How a manifest names a model: a local folder by its absolute path, a hub id as given."""
    local = Path(model).expanduser()
    return str(local.resolve()) if local.exists() else model


def encoder_record(encoder: Any, cfg: EncoderConfig) -> dict[str, Any]:
    """The settings that rebuild ``encoder`` (the effective ones, and the model as an absolute path)."""
    described = encoder.describe()
    return {
        "kind": described.get("kind", cfg.kind),
        "model": recorded_model(cfg.model),
        "max_seq_length": described.get("max_seq_length", cfg.max_seq_length),
        "query_prompt": described.get("query_prompt", cfg.query_prompt),
        "document_prompt": described.get("document_prompt", cfg.document_prompt),
        "normalize": described.get("normalize", cfg.normalize),
        "trust_remote_code": cfg.trust_remote_code,
        "batch_size": cfg.batch_size,
    }


def colbert_record(cfg: EncoderConfig) -> dict[str, Any]:
    """What a multi-vector index build records of its ColBERT encoder (the lengths and prompts are in
    the encoder's own description, ``manifest["encoder"]``)."""
    return {
        "kind": "colbert",
        "model": recorded_model(cfg.model),
        "trust_remote_code": cfg.trust_remote_code,
        "batch_size": cfg.batch_size,
    }
