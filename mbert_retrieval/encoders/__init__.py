"""Encoders: hold a third-party model, expose ``encode_queries`` / ``encode_documents``.

Heavy libraries load only when an encoder is built, so ``import mbert_retrieval`` stays light.
"""

from __future__ import annotations

from typing import Any

from .base import Encoder


def load_encoder(model: str, kind: str = "dense", **kwargs: Any) -> Encoder:
    """Build the encoder of ``kind`` for a hub id or local path."""
    if kind == "dense":
        from .dense import DenseEncoder

        return DenseEncoder(model, **kwargs)
    from ..errors import ConfigError

    raise ConfigError(f"unknown encoder kind {kind!r}; available: dense")


__all__ = ["Encoder", "load_encoder"]
