"""BM25 with bm25s: the lexical baseline, set up as MTEB's published ``mteb/baseline-bm25s``.

MTEB's baseline (``mteb/models/model_implementations/bm25.py``, English tasks) indexes
``"\\n".join([title, text])`` per document, tokenizes with ``bm25s.tokenize`` (lower case, the
scikit-learn token pattern ``(?u)\\b\\w\\w+\\b``, bm25s' English stopword list, PyStemmer's Snowball
English stemmer), scores with ``bm25s.BM25()`` defaults (``method="lucene"``, k1 1.5, b 0.75) and
keeps the top ``min(k, n_docs)`` per query, zero scores included. We do the same; our document text
``(title + " " + text).strip()`` tokenizes identically (a space and a newline both separate tokens).

The ``pyserini`` preset (``config.BM25_PRESETS``) has Pyserini's BM25 parameters (k1 0.9, b 0.4); its Lucene analyzer
(Porter stemmer, Lucene's stopwords) is not reproduced: tokenization stays as above.

The only module that imports ``bm25s`` and ``Stemmer`` (PyStemmer).
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import metadata
from typing import Any

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.types import Run

log = logging.getLogger(__name__)

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def _version() -> str:
    try:
        return metadata.version("bm25s")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency of the package
        return "missing"


def describe(
    *,
    k1: float = 1.5,
    b: float = 0.75,
    method: str = "lucene",
    stopwords: str | None = "en",
    stemmer: str | None = "english",
) -> dict[str, Any]:
    """The settings recorded beside BM25 results, with a fingerprint over them and the bm25s version."""
    settings = {"k1": k1, "b": b, "method": method, "stopwords": stopwords, "stemmer": stemmer}
    library = f"bm25s {_version()}"
    digest = hashlib.blake2b(json.dumps({**settings, "library": library}, sort_keys=True).encode(), digest_size=16)
    return {
        "name": "bm25",
        "kind": "bm25",
        "library": library,
        **settings,
        "document_text": "(title + ' ' + text).strip(), whole document (no truncation)",
        "fingerprint": f"bm25-{digest.hexdigest()}",
    }


def _stemmer(language: str | None) -> Any:
    if language is None:
        return None
    import Stemmer

    if language not in Stemmer.algorithms():
        raise ConfigError(f"unknown stemmer language {language!r}; PyStemmer has: {', '.join(Stemmer.algorithms())}")
    return Stemmer.Stemmer(language)


def bm25_search(
    corpus_ids: list[str],
    corpus_texts: list[str],
    queries: dict[str, str],
    top_k: int,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    method: str = "lucene",
    stopwords: str | None = "en",
    stemmer: str | None = "english",
    ignore_identical_ids: bool = False,
    progress: bool = True,
) -> Run:
    """Index ``corpus_texts`` and return the top ``top_k`` documents per query: ``{qid: {doc_id: score}}``.

    Defaults are MTEB's bm25s baseline (see the module docstring). ``ignore_identical_ids`` drops a
    hit whose document id equals the query id (ArguAna, Quora), as the dense path does.
    """
    if len(corpus_ids) != len(corpus_texts):
        raise ValueError("corpus_ids and corpus_texts differ in length")
    if not corpus_ids:
        raise ConfigError("BM25 needs at least one document")
    if method not in METHODS:
        raise ConfigError(f"unknown BM25 method {method!r}; choose from {', '.join(METHODS)}")
    if top_k < 1:
        raise ConfigError(f"top_k must be positive, got {top_k}")
    import bm25s

    stem = _stemmer(stemmer)
    corpus_tokens = bm25s.tokenize(corpus_texts, stopwords=stopwords, stemmer=stem, show_progress=progress)
    retriever = bm25s.BM25(k1=k1, b=b, method=method)
    retriever.index(corpus_tokens, show_progress=progress)
    query_ids = list(queries)
    if not query_ids:
        return {}
    query_tokens = bm25s.tokenize(
        [queries[q] for q in query_ids], stopwords=stopwords, stemmer=stem, show_progress=False
    )
    k = min(top_k + (1 if ignore_identical_ids else 0), len(corpus_ids))
    docs, scores = retriever.retrieve(query_tokens, k=k, show_progress=progress)
    run: Run = {}
    for row, qid in enumerate(query_ids):
        hits: dict[str, float] = {}
        for idx, score in zip(docs[row], scores[row], strict=True):
            doc_id = corpus_ids[int(idx)]
            if ignore_identical_ids and doc_id == qid:
                continue
            hits[doc_id] = float(score)
        if len(hits) > top_k:  # the extra hit fetched for a dropped identical id was not needed
            hits = dict(sorted(hits.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:top_k])
        run[qid] = hits
    return run


__all__ = ["METHODS", "bm25_search", "describe"]
