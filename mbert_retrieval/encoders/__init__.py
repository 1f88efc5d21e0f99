"""Encoders: hold a third-party model, expose ``encode_queries`` / ``encode_documents``.

Heavy libraries load only when an encoder is built, so ``import mbert_retrieval`` stays light.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mbert_retrieval.config import EncoderConfig
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.encoders.base import Encoder

KINDS = ("dense", "colbert")
log = logging.getLogger(__name__)


def log_truncated(encoder: Any, texts: Sequence[str], label: str) -> int | None:
    """Count and log the documents longer than the encoder reads (``eval`` and ``index build`` alike):
    ``LABEL: N of M documents exceed L tokens and are truncated to L``, a warning when N > 0. ``None``
    for an encoder that cannot count (BM25)."""
    count_truncated = getattr(encoder, "count_truncated", None)
    if count_truncated is None:
        return None
    truncated = int(count_truncated(texts))
    limit = getattr(encoder, "max_seq_length", None)
    log.log(
        logging.WARNING if truncated else logging.INFO,
        "%s: %d of %d documents exceed %s tokens and are truncated to %s",
        label,
        truncated,
        len(texts),
        limit,
        limit,
    )
    return truncated


def detect_kind(model: str) -> str | None:
    """``"colbert"`` for a saved multi-vector checkpoint (sentence-transformers 6 ``MultiVectorEncoder``,
    PyLate, Stanford ColBERT), ``"dense"`` for a single-vector sentence-transformers one, ``None`` when
    the folder cannot tell (a plain transformers encoder, or a hub id)."""
    folder = Path(model).expanduser()
    st_config = folder / "config_sentence_transformers.json"
    modules = folder / "modules.json"
    try:
        if st_config.is_file():
            cfg = json.loads(st_config.read_text(encoding="utf-8"))
            similarity = str(cfg.get("similarity_fn_name", "")).lower()
            if cfg.get("model_type") in ("ColBERT", "MultiVectorEncoder") or similarity in ("maxsim", "meanmaxsim"):
                return "colbert"
        if modules.is_file():
            types = [m.get("type", "") for m in json.loads(modules.read_text(encoding="utf-8"))]
            multi = any(t.startswith("pylate.") or ".multi_vector_encoder." in t for t in types)
            return "colbert" if multi else "dense"
        config = folder / "config.json"
        if config.is_file():
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
            if "HF_ColBERT" in architectures:
                return "colbert"
    except (OSError, json.JSONDecodeError, AttributeError, TypeError):
        return None
    return None


def encoder_from_config(cfg: EncoderConfig, *, progress: bool = True) -> Encoder:
    """The encoder an ``EncoderConfig`` describes (ColBERT options passed only when set)."""
    colbert = {
        "query_length": cfg.query_length,
        "document_length": cfg.document_length,
        "query_expansion": cfg.query_expansion,
        "embedding_size": cfg.embedding_size,
    }
    return load_encoder(
        cfg.model,
        cfg.kind,
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
        query_prompt=cfg.query_prompt,
        document_prompt=cfg.document_prompt,
        normalize=cfg.normalize,
        device=cfg.device,
        trust_remote_code=cfg.trust_remote_code,
        unpad=cfg.unpad,
        show_progress=progress,
        **{k: v for k, v in colbert.items() if v is not None},
    )


def load_encoder(model: str, kind: str | None = None, **kwargs: Any) -> Encoder:
    """Build the encoder of ``kind`` (default: told from the checkpoint, else dense)."""
    kind = kind or detect_kind(model) or "dense"
    if kind == "dense":
        for key in ("query_length", "document_length", "query_expansion", "embedding_size"):
            if kwargs.pop(key, None) is not None:
                raise ConfigError(f"{key} applies to ColBERT models only (--kind colbert)")
        from mbert_retrieval.encoders.dense import DenseEncoder

        return DenseEncoder(model, **kwargs)
    if kind == "colbert":
        from mbert_retrieval.encoders.colbert import ColBERTEncoder

        return ColBERTEncoder(model, **kwargs)
    raise ConfigError(f"unknown encoder kind {kind!r}; available: {', '.join(KINDS)}")


__all__ = ["KINDS", "Encoder", "detect_kind", "encoder_from_config", "load_encoder"]
