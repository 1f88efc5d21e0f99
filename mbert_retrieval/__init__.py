"""mbert-retrieval: ModernBERT as single-vector and ColBERT retrievers, indexed and evaluated.

``import mbert_retrieval`` is light: torch, sentence-transformers, FAISS and fast-plaid load only when
an encoder or index is built.
"""

from __future__ import annotations

__version__ = "0.1.0"
