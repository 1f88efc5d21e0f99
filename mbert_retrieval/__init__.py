"""mbert-retrieval: ModernBERT as single-vector and ColBERT retrievers, indexed and evaluated.

The Python API, the same jobs as the commands (plain data between them: numpy arrays, BEIR-style
``{qid: {docid: score}}`` runs, results dicts)::

    from mbert_retrieval import SearchIndex, build_index, load_encoder, run_eval, train

``import mbert_retrieval`` is light: each name below is imported when first used, and torch,
sentence-transformers, FAISS and fast-plaid load only when an encoder or index is built.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (the layout: docs/architecture.md)
_API = {
    "load_encoder": "mbert_retrieval.encoders",
    "encoder_from_config": "mbert_retrieval.encoders",
    "EncoderConfig": "mbert_retrieval.config",
    "EvalConfig": "mbert_retrieval.config",
    "load_suite": "mbert_retrieval.catalog",
    "beir_folders_suite": "mbert_retrieval.catalog",
    "load_index_spec": "mbert_retrieval.catalog",
    "load_recipe_by_name": "mbert_retrieval.catalog",
    "load_recipe": "mbert_retrieval.recipes",
    "build_index": "mbert_retrieval.flows.index_build",
    "add_documents": "mbert_retrieval.flows.index_build",
    "SearchIndex": "mbert_retrieval.retrieval.search",
    "run_eval": "mbert_retrieval.flows.evaluate",
    "train": "mbert_retrieval.flows.train",
    "to_mteb": "mbert_retrieval.retrieval.mteb",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'mbert_retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
