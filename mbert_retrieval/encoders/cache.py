"""On-disk cache of document embeddings, in shards: reuse across runs and resume after a kill.

Layout: ``<cache_dir>/<key>/meta.json`` and one file per shard, where ``key`` hashes the encoder's
fingerprint (weights and settings) and the corpus (ids and texts):

- dense (one vector per document): ``shard-00000.npy``, float32 ``[rows, dim]``, memory-mapped on read;
- multi-vector (a token matrix per document): ``shard-00000.npz`` holding ``tokens`` (float16
  ``[total tokens, dim]``) and ``offsets`` (int64 ``[rows + 1]``).

Each shard is written atomically, so a killed run leaves only complete shards, and the next run
encodes only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mbert_retrieval.core.io import atomic_path, write_json

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = {"dense": 50_000, "multi": 10_000}

Embeddings = Any  # np.ndarray [rows, dim] (dense) or list of np.ndarray [tokens_i, dim] (multi)


def corpus_hash(ids: Sequence[str], texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for i, t in zip(ids, texts, strict=True):
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x01")
    return h.hexdigest()


def _save(path: Path, emb: Embeddings, multi: bool) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if multi:
            lengths = [len(m) for m in emb]
            offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
            np.savez(f, tokens=np.concatenate(emb).astype(np.float16), offsets=offsets)
        else:
            np.save(f, emb)


def _load(path: Path, multi: bool, rows: int, dim: int) -> Embeddings | None:
    """The shard's embeddings, or None when the file is not a complete shard of the right shape."""
    try:
        if not multi:
            emb = np.load(path, mmap_mode="r")
            return emb if emb.shape == (rows, dim) and emb.dtype == np.float32 else None
        with np.load(path) as z:
            tokens, offsets = z["tokens"], z["offsets"]
        if len(offsets) != rows + 1 or tokens.ndim != 2 or tokens.shape[1] != dim or offsets[-1] != len(tokens):
            return None
        return [tokens[offsets[i] : offsets[i + 1]] for i in range(rows)]
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def _check(emb: Embeddings, multi: bool, rows: int, dim: int) -> Embeddings:
    if multi:
        if len(emb) != rows or any(m.ndim != 2 or m.shape[1] != dim for m in emb):
            raise RuntimeError(f"encoder returned {len(emb)} token matrices, expected {rows} of width {dim}")
        return [np.asarray(m) for m in emb]
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if emb.shape != (rows, dim):
        raise RuntimeError(f"encoder returned shape {emb.shape}, expected {(rows, dim)}")
    return emb


def _cache_entry(
    ids: Sequence[str],
    texts: Sequence[str],
    *,
    encoder_fingerprint: str,
    dim: int,
    cache_dir: str | Path | None,
    multi: bool,
    shard_size: int | None,
    label: str,
) -> tuple[Path | None, int]:
    """The cache folder of this encoder and corpus (``None`` without ``cache_dir``), its ``meta.json``
    written, and the shard size (an existing entry's wins, so a resumed run lines up with its shards)."""
    shard_size = shard_size or DEFAULT_SHARD_SIZE["multi" if multi else "dense"]
    if cache_dir is None:
        return None, shard_size
    key = hashlib.blake2b(f"{encoder_fingerprint}:{corpus_hash(ids, texts)}".encode(), digest_size=12).hexdigest()
    folder = Path(cache_dir) / key
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            shard_size = int(json.loads(meta_path.read_text())["shard_size"])
        except (ValueError, KeyError, json.JSONDecodeError):
            log.warning("%s is unreadable; re-encoding into a fresh cache entry", meta_path)
    meta = {
        "encoder": encoder_fingerprint,
        "n_docs": len(texts),
        "dim": dim,
        "multi_vector": multi,
        "shard_size": shard_size,
        "label": label,
    }
    try:
        same = meta_path.is_file() and json.loads(meta_path.read_text() or "{}") == meta
    except json.JSONDecodeError:
        same = False
    if not same:
        write_json(meta_path, meta)
    return folder, shard_size


def iter_document_embeddings(
    ids: Sequence[str],
    texts: Sequence[str],
    encode: Callable[[Sequence[str], str], Embeddings],
    *,
    encoder_fingerprint: str,
    dim: int,
    cache_dir: str | Path | None,
    multi: bool = False,
    shard_size: int | None = None,
    label: str = "documents",
    only: Callable[[int], bool] | None = None,
) -> Iterator[tuple[slice, Embeddings]]:
    """Yield ``(rows, embeddings)`` shard by shard, in corpus order, from cache or freshly encoded.

    ``encode(texts, desc)`` is the encoder's document function; ``multi`` says it returns one token
    matrix per text. With ``cache_dir=None`` nothing is stored. Shards already on disk (from an
    earlier or interrupted run, or another ``torchrun`` rank) are read, not encoded. ``only(s)``
    keeps shard ``s`` (the others are neither read nor encoded).
    """
    n = len(texts)
    folder, shard_size = _cache_entry(
        ids,
        texts,
        encoder_fingerprint=encoder_fingerprint,
        dim=dim,
        cache_dir=cache_dir,
        multi=multi,
        shard_size=shard_size,
        label=label,
    )
    n_shards = max(1, -(-n // shard_size))
    suffix = ".npz" if multi else ".npy"
    for s in range(n_shards):
        if only is not None and not only(s):
            continue
        rows = slice(s * shard_size, min(n, (s + 1) * shard_size))
        count = rows.stop - rows.start
        shard_path = folder / f"shard-{s:05d}{suffix}" if folder is not None else None
        if shard_path is not None and shard_path.is_file():
            cached = _load(shard_path, multi, count, dim)
            if cached is not None:
                yield rows, cached
                continue
            log.warning("%s is not a complete shard; encoding it again", shard_path)
        desc = f"encode {label}" + (f" [{s + 1}/{n_shards}]" if n_shards > 1 else "")
        emb = _check(encode(texts[rows], desc), multi, count, dim)
        if shard_path is not None:
            _save(shard_path, emb, multi)
        yield rows, emb


# The loop index build and eval share: a corpus through this cache into an index, shard by shard


class EncodeSeconds(NamedTuple):
    """Where the time of ``encode_into_index`` went: reading or encoding shards, and adding them."""

    encode: float
    index: float


def _encoder_shards(
    ids: Sequence[str],
    texts: Sequence[str],
    encoder: Any,
    *,
    cache_dir: str | Path | None,
    label: str,
    shard_size: int | None,
    only: Callable[[int], bool] | None = None,
) -> Iterator[tuple[slice, Embeddings]]:
    """``iter_document_embeddings`` with an encoder's document function, fingerprint, width and kind."""
    return iter_document_embeddings(
        ids,
        texts,
        encoder.encode_documents,
        encoder_fingerprint=encoder.fingerprint(),
        dim=encoder.dim,
        cache_dir=cache_dir,
        multi=getattr(encoder, "kind", "dense") == "colbert",
        shard_size=shard_size,
        label=label,
        only=only,
    )


def encode_into_index(
    index: Any,
    ids: Sequence[str],
    texts: Sequence[str],
    encoder: Any,
    *,
    cache_dir: str | Path | None,
    label: str,
    shard_size: int | None = None,
    n_queries: int | None = None,
    top_k: int = 10,
) -> EncodeSeconds:
    """Add the documents ``ids`` / ``texts`` to ``index``, encoded with ``encoder`` shard by shard.

    Shards go through the cache in ``cache_dir`` (``None``: nothing stored): those already there
    from an earlier or interrupted run are read, not encoded. A ColBERT encoder (``kind``
    ``"colbert"``) gives token-vector shards. ``label`` names the shards in the progress bar.
    An index that holds documents until its first search (PLAID: ``prepare``) is finished here, for the
    ``n_queries`` top-``top_k`` searches to come (``None``: not known), and counted as index time.
    """
    t = time.perf_counter()
    adding = 0.0
    for rows, emb in _encoder_shards(ids, texts, encoder, cache_dir=cache_dir, label=label, shard_size=shard_size):
        t_add = time.perf_counter()
        index.add(list(ids[rows]), emb)
        adding += time.perf_counter() - t_add
    if hasattr(index, "prepare"):
        t_add = time.perf_counter()
        index.prepare(n_queries, top_k)
        adding += time.perf_counter() - t_add
    return EncodeSeconds(time.perf_counter() - t - adding, adding)


def encode_rank_shards(
    ids: Sequence[str],
    texts: Sequence[str],
    encoder: Any,
    *,
    cache_dir: str | Path,
    label: str,
    rank: int,
    world_size: int,
    shard_size: int | None = None,
) -> list[int]:
    """This ``torchrun`` rank's part of a corpus: the shards ``s`` with ``s % world_size == rank``, encoded
    into the cache (those already there are left as they are). Rank 0 then reads every shard from the
    cache (``encode_into_index``). Returns the shards this rank holds."""
    mine: list[int] = []

    def keep(s: int) -> bool:
        if s % world_size != rank:
            return False
        mine.append(s)
        return True

    for _ in _encoder_shards(ids, texts, encoder, cache_dir=cache_dir, label=label, shard_size=shard_size, only=keep):
        pass  # each shard is in the cache once yielded
    return mine
