"""Indexes: store document embeddings under ids, answer top-k searches. Never see text or a model.

``make_index`` picks the implementation for an ``IndexSpec``; backends (FAISS, fast-plaid,
voyager) load only when such an index is built.
"""

from __future__ import annotations

from pathlib import Path

from mbert_retrieval.config import IndexSpec
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.indexes.base import Index

SINGLE_VECTOR_KINDS = ("faiss",)
MULTI_VECTOR_KINDS = ("plaid", "voyager", "exact-maxsim")


def check_compatible(spec: IndexSpec, encoder_kind: str) -> None:
    """Single-vector encoders go with FAISS; multi-vector (ColBERT) ones with PLAID, Voyager, exact MaxSim."""
    multi = encoder_kind == "colbert"
    if multi and spec.kind in SINGLE_VECTOR_KINDS:
        raise ConfigError(
            f"a {spec.kind} index holds one vector per document; a ColBERT encoder needs one of {MULTI_VECTOR_KINDS}"
        )
    if not multi and spec.kind in MULTI_VECTOR_KINDS:
        raise ConfigError(f"a {spec.kind} index holds token vectors; a single-vector encoder needs a faiss index")


def make_index(spec: IndexSpec, dim: int, *, folder: str | Path | None = None) -> Index:
    """A new, empty index for ``spec``. ``folder`` is where on-disk backends (PLAID, Voyager) live."""
    if spec.kind == "faiss":
        from mbert_retrieval.indexes.faiss_index import FaissIndex

        return FaissIndex(dim, spec)
    if spec.kind == "exact-maxsim":
        from mbert_retrieval.indexes.maxsim import ExactMaxSimIndex

        return ExactMaxSimIndex(dim, spec)
    if folder is None:
        raise ConfigError(f"a {spec.kind} index lives on disk: give it a folder")
    if spec.kind == "plaid":
        from mbert_retrieval.indexes.plaid import PlaidIndex

        return PlaidIndex(dim, spec, folder)
    if spec.kind == "voyager":
        from mbert_retrieval.indexes.voyager import VoyagerIndex

        return VoyagerIndex(dim, spec, folder)
    raise ConfigError(f"unknown index kind {spec.kind!r}")  # pragma: no cover - the spec union admits no other


__all__ = ["MULTI_VECTOR_KINDS", "SINGLE_VECTOR_KINDS", "Index", "check_compatible", "make_index"]
