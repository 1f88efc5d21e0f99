"""FAISS indices for single-vector embeddings. The one module that imports ``faiss``.

Inner product on (normally L2-normalised) float32 vectors. ``flat`` is exact search; HNSW, IVF
and scalar-quantised indices are built from a ``FaissSpec`` (``indices/faiss-*.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import FaissSpec
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
    """A FAISS index with string document ids, searched by inner product.

    Built from a ``FaissSpec`` (flat, hnsw, ivf-flat, ivf-pq, sq). Indices that need training (IVF,
    PQ, SQ) are trained on a seeded sample of the first vectors added, or explicitly by ``train``.
    """

    kind = "faiss"

    def __init__(self, dim: int, spec: FaissSpec | None = None, *, query_batch_size: int = 256) -> None:
        faiss = _faiss()
        if dim < 1:
            raise ConfigError(f"index dimension must be positive, got {dim}")
        self.dim = dim
        self.spec = spec or FaissSpec()
        self.query_batch_size = query_batch_size
        factory = self.spec.factory_string()
        if self.spec.type == "ivf-pq" and dim % self.spec.m:
            raise ConfigError(f"ivf-pq: m={self.spec.m} sub-quantisers must divide the dimension {dim}")
        try:
            self._index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid FAISS index {factory!r}: {str(e).strip().splitlines()[-1]}") from None
        if self.spec.type == "hnsw":
            faiss.downcast_index(self._index).hnsw.efConstruction = self.spec.ef_construction
        self._set_search_params()
        self.doc_ids: list[str] = []

    def _set_search_params(self) -> None:
        faiss = _faiss()
        params = faiss.ParameterSpace()
        if self.spec.type == "hnsw":
            params.set_index_parameter(self._index, "efSearch", self.spec.ef_search)
        elif self.spec.type.startswith("ivf"):
            params.set_index_parameter(self._index, "nprobe", self.spec.nprobe)

    @property
    def factory(self) -> str:
        return self.spec.factory_string()

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, vectors: np.ndarray, seed: int = 0) -> None:
        """Train the quantiser on (a seeded sample of at most ``train_sample`` of) ``vectors``."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(x) > self.spec.train_sample:
            pick = np.random.default_rng(seed).choice(len(x), self.spec.train_sample, replace=False)
            x = x[np.sort(pick)]
        if self.spec.type.startswith("ivf") and len(x) < self.spec.nlist:
            raise ConfigError(
                f"{self.spec.type} with nlist={self.spec.nlist} needs at least {self.spec.nlist} training vectors "
                f"(FAISS advises 39 per cluster); got {len(x)}: lower nlist in the index spec"
            )
        self._index.train(x)

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
            self.train(x)
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
                "spec": self.spec.model_dump(),
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
        index = cls(int(manifest["dim"]), FaissSpec.model_validate(manifest["spec"]))
        index._index = faiss.read_index(str(path / INDEX_FILE))
        index._set_search_params()
        index.doc_ids = (path / IDS_FILE).read_text(encoding="utf-8").splitlines()
        if len(index.doc_ids) != index._index.ntotal or len(index.doc_ids) != manifest["n_docs"]:
            raise DataError(path, f"{IDS_FILE}, {INDEX_FILE} and {MANIFEST_FILE} disagree on the number of documents")
        return index
