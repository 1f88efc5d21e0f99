"""Exact MaxSim over all documents: the index-free reference for multi-vector (ColBERT) search.

score(q, d) = sum over query tokens i of max over document tokens j of <q_i, d_j>.

Document token vectors are stored in one array (fp16 by default: half the memory, and the only
rounding — scores are accumulated in float32), with per-document offsets; up to ``float32_copy_gib`` a
float32 copy is kept for scoring, so a search does not convert every block again. Search scores a batch
of queries against blocks of whole documents with one matrix product per block, then
``maximum.reduceat`` over each document's tokens and ``add.reduceat`` over each query's tokens.
Pure numpy: no model, no third-party index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mbert_retrieval.config import ExactMaxSimSpec
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.io import atomic_path, write_lines
from mbert_retrieval.core.types import Run
from mbert_retrieval.indexes.manifest import read_manifest, write_manifest

TOKENS_FILE = "tokens.npy"
OFFSETS_FILE = "offsets.npy"
IDS_FILE = "doc_ids.txt"


def check_token_matrices(doc_ids: Sequence[str], embeddings: Sequence[np.ndarray], dim: int) -> None:
    """One ``[tokens >= 1, dim]`` matrix per id, or a ``ValueError`` naming the document."""
    if len(doc_ids) != len(embeddings):
        raise ValueError(f"{len(doc_ids)} document ids but {len(embeddings)} token matrices")
    for doc_id, emb in zip(doc_ids, embeddings, strict=True):
        if emb.ndim != 2 or emb.shape[1] != dim or emb.shape[0] == 0:
            raise ValueError(f"document {doc_id!r}: token matrix must be [tokens >= 1, {dim}], got {emb.shape}")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties: lower index first)."""
    k = min(k, len(scores))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


class ExactMaxSimIndex:
    """All document token vectors in memory; every query scored against every document."""

    kind = "exact-maxsim"

    def __init__(self, dim: int, spec: ExactMaxSimSpec | None = None, *, query_batch_size: int = 32) -> None:
        self.dim = dim
        self.spec = spec or ExactMaxSimSpec()
        self.query_batch_size = query_batch_size
        self.doc_ids: list[str] = []
        self._tokens: np.ndarray = np.empty((0, dim), dtype=self.dtype)  # packed token vectors
        self._pending: list[np.ndarray] = []  # added since the last pack
        self._lengths: list[int] = []
        self._offsets: np.ndarray | None = None
        self._float32: np.ndarray | None = None  # the working copy of fp16 tokens, when small enough

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    @property
    def n_tokens(self) -> int:
        return int(sum(self._lengths))

    def add(self, doc_ids: Sequence[str], embeddings: Sequence[np.ndarray]) -> None:
        """Add one token matrix ``[t_i, dim]`` per document (``t_i`` >= 1)."""
        check_token_matrices(doc_ids, embeddings, self.dim)
        for emb in embeddings:
            self._pending.append(np.asarray(emb, dtype=self.dtype))
            self._lengths.append(emb.shape[0])
        self.doc_ids.extend(doc_ids)
        self._offsets = None

    def _packed(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pending:
            self._tokens = np.concatenate([self._tokens, *self._pending])
            self._pending = []
            self._float32 = None
        if self._offsets is None:
            self._offsets = np.concatenate([[0], np.cumsum(self._lengths, dtype=np.int64)]).astype(np.int64)
        return self._tokens, self._offsets

    def _scoring_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """The tokens as searches read them: a float32 copy of fp16 storage kept while it fits in
        ``float32_copy_gib`` (converting fp16 blocks costs about twice the matrix product of one query:
        benchmarks/search.py), else the stored array, converted block by block."""
        tokens, offsets = self._packed()
        if tokens.dtype == np.float32:
            return tokens, offsets
        if self._float32 is None and tokens.size * 4 <= self.spec.float32_copy_gib * 2**30:
            self._float32 = tokens.astype(np.float32)
        return (self._float32 if self._float32 is not None else tokens), offsets

    def _blocks(self, offsets: np.ndarray) -> list[tuple[int, int]]:
        """Document ranges ``[a, b)`` holding at most ``block_tokens`` tokens (one document at least)."""
        blocks, a = [], 0
        n = len(offsets) - 1
        while a < n:
            limit = offsets[a] + self.spec.block_tokens
            b = int(np.searchsorted(offsets, limit, side="right")) - 1
            b = max(b, a + 1)
            blocks.append((a, min(b, n)))
            a = min(b, n)
        return blocks

    def score_all(self, queries: Sequence[np.ndarray]) -> np.ndarray:
        """``float32 [n_queries, n_docs]`` MaxSim scores of each query against every document."""
        tokens, offsets = self._scoring_tokens()
        q_lengths = [q.shape[0] for q in queries]
        q_all = np.concatenate([np.asarray(q, dtype=np.float32) for q in queries])
        q_offsets = np.concatenate([[0], np.cumsum(q_lengths)[:-1]]).astype(np.int64)
        out = np.empty((len(queries), len(self.doc_ids)), dtype=np.float32)
        for a, b in self._blocks(offsets):
            block = tokens[offsets[a] : offsets[b]].astype(np.float32, copy=False)
            sims = q_all @ block.T  # [query tokens, block tokens]
            per_doc = np.maximum.reduceat(sims, offsets[a:b] - offsets[a], axis=1)  # [query tokens, docs]
            out[:, a:b] = np.add.reduceat(per_doc, q_offsets, axis=0)
        return out

    def score(self, query: np.ndarray, doc_indices: Sequence[int]) -> np.ndarray:
        """MaxSim of one query against the given documents (for re-ranking candidates: a few documents
        each, so no float32 copy of the whole corpus is made for it)."""
        tokens, offsets = self._packed()
        q = np.asarray(query, dtype=np.float32)
        out = np.empty(len(doc_indices), dtype=np.float32)
        for i, d in enumerate(doc_indices):
            sims = q @ tokens[offsets[d] : offsets[d + 1]].astype(np.float32, copy=False).T
            out[i] = sims.max(axis=1).sum()
        return out

    def search(
        self,
        query_ids: Sequence[str],
        embeddings: Sequence[np.ndarray],
        k: int,
        *,
        ignore_identical_ids: bool = False,
    ) -> Run:
        if len(query_ids) != len(embeddings):
            raise ValueError(f"{len(query_ids)} query ids but {len(embeddings)} query matrices")
        run: Run = {}
        if not self.doc_ids:
            return {qid: {} for qid in query_ids}
        fetch = k + (1 if ignore_identical_ids else 0)
        for start in range(0, len(query_ids), self.query_batch_size):
            batch_ids = query_ids[start : start + self.query_batch_size]
            scores = self.score_all(embeddings[start : start + self.query_batch_size])
            for row, qid in enumerate(batch_ids):
                hits = {}
                for j in top_k(scores[row], fetch):
                    doc = self.doc_ids[j]
                    if ignore_identical_ids and doc == qid:
                        continue
                    hits[doc] = float(scores[row, j])
                    if len(hits) == k:
                        break
                run[qid] = hits
        return run

    def save_arrays(self, path: str | Path) -> None:
        """Write the token vectors, offsets and ids (no manifest: for indices that embed this one)."""
        tokens, offsets = self._packed()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, arr in ((TOKENS_FILE, tokens), (OFFSETS_FILE, offsets)):
            with atomic_path(path / name) as tmp, open(tmp, "wb") as f:
                np.save(f, arr)
        write_lines(path / IDS_FILE, self.doc_ids)

    def load_arrays(self, path: str | Path, mmap: bool = True) -> None:
        path = Path(path)
        self._tokens = np.load(path / TOKENS_FILE, mmap_mode="r" if mmap else None)
        self._pending = []
        self._float32 = None
        self._offsets = np.load(path / OFFSETS_FILE)
        self._lengths = np.diff(self._offsets).tolist()
        self.doc_ids = (path / IDS_FILE).read_text(encoding="utf-8").splitlines()
        if len(self._offsets) != len(self.doc_ids) + 1 or self._tokens.shape[1:] != (self.dim,):
            raise DataError(path, f"{IDS_FILE}, {OFFSETS_FILE} and {TOKENS_FILE} disagree")

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        self.save_arrays(path)
        fields = {"kind": self.kind, "spec": self.spec.model_dump(), "dim": self.dim, "n_docs": len(self)}
        write_manifest(path, fields, meta)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> ExactMaxSimIndex:
        manifest = read_manifest(path, kind=cls.kind)
        index = cls(int(manifest["dim"]), ExactMaxSimSpec.model_validate(manifest["spec"]))
        index.load_arrays(path, mmap)
        if len(index.doc_ids) != manifest["n_docs"]:
            raise DataError(path, f"{IDS_FILE} and the manifest disagree on the number of documents")
        return index
