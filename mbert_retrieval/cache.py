"""On-disk cache of document embeddings, in shards: reuse across runs and resume after a kill.

Layout: ``<cache_dir>/<key>/meta.json`` and ``shard-00000.npy`` ... (float32 ``[rows, dim]``),
where ``key`` hashes the encoder's fingerprint (weights and settings) and the corpus (ids and
texts). Each shard is written atomically, so a killed run leaves only complete shards, and the
next run encodes only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .io import atomic_path, write_json

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 50_000


def corpus_hash(ids: Sequence[str], texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for i, t in zip(ids, texts, strict=False):
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x01")
    return h.hexdigest()


def iter_document_embeddings(
    ids: Sequence[str],
    texts: Sequence[str],
    encode: Callable[[Sequence[str], str], np.ndarray],
    *,
    encoder_fingerprint: str,
    dim: int,
    cache_dir: str | Path | None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    label: str = "documents",
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, embeddings)`` shard by shard, in corpus order, from cache or freshly encoded.

    ``encode(texts, desc)`` is the encoder's document function. With ``cache_dir=None`` nothing
    is stored. Shards already on disk (from an earlier or interrupted run) are read, not encoded.
    """
    n = len(texts)
    folder: Path | None = None
    if cache_dir is not None:
        key = hashlib.blake2b(f"{encoder_fingerprint}:{corpus_hash(ids, texts)}".encode(), digest_size=12).hexdigest()
        folder = Path(cache_dir) / key
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            try:
                shard_size = int(json.loads(meta_path.read_text())["shard_size"])
            except (ValueError, KeyError, json.JSONDecodeError):
                log.warning("%s is unreadable; re-encoding into a fresh cache entry", meta_path)
        write_json(
            meta_path,
            {"encoder": encoder_fingerprint, "n_docs": n, "dim": dim, "shard_size": shard_size, "label": label},
        )
    n_shards = max(1, -(-n // shard_size))
    for s in range(n_shards):
        rows = slice(s * shard_size, min(n, (s + 1) * shard_size))
        expected = (rows.stop - rows.start, dim)
        shard_path = folder / f"shard-{s:05d}.npy" if folder is not None else None
        if shard_path is not None and shard_path.is_file():
            try:
                emb = np.load(shard_path, mmap_mode="r")
                if emb.shape == expected and emb.dtype == np.float32:
                    yield rows, emb
                    continue
            except (ValueError, OSError):
                pass
            log.warning("%s is not a complete shard; encoding it again", shard_path)
        desc = f"encode {label}" + (f" [{s + 1}/{n_shards}]" if n_shards > 1 else "")
        emb = np.ascontiguousarray(encode(texts[rows], desc), dtype=np.float32)
        if emb.shape != expected:
            raise RuntimeError(f"encoder returned shape {emb.shape}, expected {expected}")
        if shard_path is not None:
            with atomic_path(shard_path) as tmp, open(tmp, "wb") as f:
                np.save(f, emb)
        yield rows, emb
