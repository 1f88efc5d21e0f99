"""Encode a corpus through the embedding-shard cache into an index: the loop the multi-vector index
build and the eval flow share (``cache.iter_document_embeddings`` shard by shard, each shard added as
soon as it is read or encoded)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mbert_retrieval.encoders.cache import iter_document_embeddings


class EncodeSeconds(NamedTuple):
    """Where the time of ``encode_into_index`` went: reading or encoding shards, and adding them."""

    encode: float
    index: float


def encode_into_index(
    index: Any,
    ids: Sequence[str],
    texts: Sequence[str],
    encoder: Any,
    *,
    cache_dir: str | Path | None,
    label: str,
    shard_size: int | None = None,
) -> EncodeSeconds:
    """Add the documents ``ids`` / ``texts`` to ``index``, encoded with ``encoder`` shard by shard.

    Shards go through the cache in ``cache_dir`` (``None``: nothing stored): those already there
    from an earlier or interrupted run are read, not encoded. A ColBERT encoder (``kind``
    ``"colbert"``) gives token-vector shards. ``label`` names the shards in the progress bar.
    """
    t = time.perf_counter()
    adding = 0.0
    for rows, emb in iter_document_embeddings(
        ids,
        texts,
        encoder.encode_documents,
        encoder_fingerprint=encoder.fingerprint(),
        dim=encoder.dim,
        cache_dir=cache_dir,
        multi=getattr(encoder, "kind", "dense") == "colbert",
        shard_size=shard_size,
        label=label,
    ):
        t_add = time.perf_counter()
        index.add(list(ids[rows]), emb)
        adding += time.perf_counter() - t_add
    return EncodeSeconds(time.perf_counter() - t - adding, adding)
