"""FAISS indices for single-vector embeddings. The one module that imports ``faiss``.

Inner product on (normally L2-normalised) float32 vectors. ``"Flat"`` is exact search; other
FAISS factory strings (``"HNSW32"``, ``"IVF1024,PQ64"``) are accepted and trained on the first
vectors added.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_path, write_json, write_lines
from ..types import Run

INDEX_FILE = "index.faiss"
IDS_FILE = "doc_ids.txt"
MANIFEST_FILE = "manifest.json"


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("FAISS is not installed: pip install 'mbert-retrieval[cpu]' (or [gpu] on CUDA)") from e
    return faiss


def faiss_version() -> str:
    return str(_faiss().__version__)


class FaissIndex:
    """A FAISS index with string document ids, searched by inner product."""

    kind = "faiss"

    def __init__(self, dim: int, factory: str = "Flat", *, query_batch_size: int = 256) -> None:
        faiss = _faiss()
        if dim < 1:
            raise ConfigError(f"index dimension must be positive, got {dim}")
        self.dim = dim
        self.factory = factory
        self.query_batch_size = query_batch_size
        try:
            self._index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid FAISS factory string {factory!r}: {str(e).splitlines()[0]}") from None
        self.doc_ids: list[str] = []

    def __len__(self) -> int:
        return len(self.doc_ids)

    def _check(self, embeddings: np.ndarray, n: int, what: str) -> np.ndarray:
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} embeddings must have shape [n, {self.dim}], got {list(x.shape)}")
        if x.shape[0] != n:
            raise ValueError(f"{n} {what} ids but {x.shape[0]} embeddings")
        return x

    def add(self, doc_ids: Sequence[str], embeddings: np.ndarray) -> None:
        x = self._check(embeddings, len(doc_ids), "document")
        if not self._index.is_trained:
            self._index.train(x)
        self._index.add(x)
        self.doc_ids.extend(doc_ids)

    def search(
        self, query_ids: Sequence[str], embeddings: np.ndarray, k: int, *, ignore_identical_ids: bool = False
    ) -> Run:
        """Top-``k`` documents per query. With ``ignore_identical_ids`` a document whose id equals
        the query id is dropped (one extra hit is fetched so that ``k`` remain)."""
        x = self._check(embeddings, len(query_ids), "query")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        fetch = min(k + (1 if ignore_identical_ids else 0), len(self.doc_ids))
        run: Run = {}
        if fetch == 0:
            return {qid: {} for qid in query_ids}
        for start in range(0, len(query_ids), self.query_batch_size):
            scores, idx = self._index.search(x[start : start + self.query_batch_size], fetch)
            for row, qid in enumerate(query_ids[start : start + self.query_batch_size]):
                hits: dict[str, float] = {}
                for s, i in zip(scores[row].tolist(), idx[row].tolist(), strict=False):
                    if i < 0:
                        continue
                    doc = self.doc_ids[i]
                    if ignore_identical_ids and doc == qid:
                        continue
                    hits[doc] = s
                    if len(hits) == k:
                        break
                run[qid] = hits
        return run

    def save(self, path: str | Path) -> None:
        """Write ``index.faiss``, ``doc_ids.txt`` and ``manifest.json`` to a folder, each atomically."""
        faiss = _faiss()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / INDEX_FILE) as tmp:
            faiss.write_index(self._index, str(tmp))
        write_lines(path / IDS_FILE, self.doc_ids)
        write_json(
            path / MANIFEST_FILE,
            {
                "kind": self.kind,
                "factory": self.factory,
                "dim": self.dim,
                "n_docs": len(self),
                "faiss": faiss_version(),
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> FaissIndex:
        faiss = _faiss()
        path = Path(path)
        manifest_path = path / MANIFEST_FILE
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(manifest_path, "missing: not an index folder, or an unfinished build") from None
        except json.JSONDecodeError as e:
            raise DataError(manifest_path, f"malformed JSON: {e.msg}", line=e.lineno) from None
        index = cls(int(manifest["dim"]), manifest["factory"])
        index._index = faiss.read_index(str(path / INDEX_FILE))
        index.doc_ids = (path / IDS_FILE).read_text(encoding="utf-8").splitlines()
        if len(index.doc_ids) != index._index.ntotal or len(index.doc_ids) != manifest["n_docs"]:
            raise DataError(path, f"{IDS_FILE}, {INDEX_FILE} and {MANIFEST_FILE} disagree on the number of documents")
        return index
