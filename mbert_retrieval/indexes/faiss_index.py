"""FAISS indices for single-vector embeddings. The one module that imports ``faiss``.

Inner product on (normally L2-normalised) float32 vectors. ``flat`` is exact search; HNSW, IVF
and scalar-quantised indices are built from a ``FaissSpec`` (``indices/faiss-*.yaml``).

FAISS label ``i`` is always document ``doc_ids[i]``: removals renumber the labels of IVF
indices so that this holds after ``remove`` too. When FAISS has GPU support and a GPU is visible,
flat and IVF indices are moved to the GPU(s) for training, adding and searching (the same spec;
HNSW and scalar quantisers stay on the CPU), and copied back to the CPU to be saved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.config import FaissSpec
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import atomic_path, write_lines
from mbert_retrieval.core.types import Run
from mbert_retrieval.indexes.manifest import read_manifest, write_manifest

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "doc_ids.txt"
MANIFEST_FILE = "manifest.json"
GPU_TYPES = ("flat", "ivf-flat", "ivf-pq")  # the spec types FAISS can run on a GPU


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("FAISS is not installed: pip install 'mbert-retrieval[cpu]' (or [gpu] on CUDA)") from e
    return faiss


def faiss_version() -> str:
    return str(_faiss().__version__)


def gpu_count() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu, or with faiss-gpu on a machine without a GPU."""
    get = getattr(_faiss(), "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:  # pragma: no cover - a broken CUDA setup
        return 0


def set_num_threads(n: int | None) -> None:
    """Threads FAISS (OpenMP) may use; ``None`` keeps its default (every core). One thread can be much
    faster on a busy machine: OpenMP threads spin at every barrier, and PQ training has thousands."""
    if n is not None:
        if n < 1:
            raise ConfigError(f"FAISS threads must be positive, got {n}")
        _faiss().omp_set_num_threads(n)


def min_train_vectors(spec: FaissSpec) -> int:
    """The fewest training vectors a spec's index can be trained on (0: it needs no training)."""
    if spec.type == "ivf-flat":
        return spec.nlist
    if spec.type == "ivf-pq":
        return max(spec.nlist, 2**spec.nbits)
    return 1 if spec.type == "sq" else 0


class FaissIndex:
    """A FAISS index with string document ids, searched by inner product.

    Built from a ``FaissSpec`` (flat, hnsw, ivf-flat, ivf-pq, sq). Indices that need training (IVF,
    PQ, SQ) are trained on a seeded sample of the first vectors added, or explicitly by ``train``.
    ``use_gpu``: move flat and IVF indices to the GPU(s) when FAISS can (default); CPU otherwise.
    """

    kind = "faiss"

    def __init__(
        self, dim: int, spec: FaissSpec | None = None, *, query_batch_size: int = 256, use_gpu: bool = True
    ) -> None:
        faiss = _faiss()
        if dim < 1:
            raise ConfigError(f"index dimension must be positive, got {dim}")
        self.dim = dim
        self.spec = spec or FaissSpec()
        self.query_batch_size = query_batch_size
        self.use_gpu = use_gpu
        self._on_gpu = False
        factory = self.spec.factory_string()
        if self.spec.type == "ivf-pq" and dim % self.spec.m:
            raise ConfigError(f"ivf-pq: m={self.spec.m} sub-quantisers must divide the dimension {dim}")
        try:
            self._index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"invalid FAISS index {factory!r}: {str(e).strip().splitlines()[-1]}") from None
        if self.spec.type == "hnsw":
            faiss.downcast_index(self._index).hnsw.efConstruction = self.spec.ef_construction
        elif self.spec.type == "ivf-pq":
            # the factory turns on polysemous training (for Hamming-filtered search, unused here): it is
            # most of IVF-PQ's training time (SciFact, MiniLM: 112 s of 126 s) and changes no result
            faiss.downcast_index(self._index).do_polysemous_training = False
        self._set_search_params()
        self.doc_ids: list[str] = []
        self._positions: dict[str, int] | None = None

    def _set_search_params(self) -> None:
        faiss = _faiss()
        params = faiss.GpuParameterSpace() if self._on_gpu else faiss.ParameterSpace()
        if self.spec.type == "hnsw":
            params.set_index_parameter(self._index, "efSearch", self.spec.ef_search)
        elif self.spec.type.startswith("ivf"):
            params.set_index_parameter(self._index, "nprobe", self.spec.nprobe)

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the search-time knobs (HNSW ``ef_search``, IVF ``nprobe``) without rebuilding."""
        update = {k: v for k, v in {"ef_search": ef_search, "nprobe": nprobe}.items() if v is not None}
        if update:
            self.spec = FaissSpec.model_validate({**self.spec.model_dump(), **update})
            self._set_search_params()

    # -- device ----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return "gpu" if self._on_gpu else "cpu"

    def _to_gpu(self) -> None:
        """Move the index to all visible GPUs when FAISS supports it and this kind runs there."""
        if self._on_gpu or not self.use_gpu or self.spec.type not in GPU_TYPES or gpu_count() == 0:
            return
        faiss = _faiss()
        try:
            gpu_index = faiss.index_cpu_to_all_gpus(self._index)
        except (RuntimeError, AttributeError) as e:  # e.g. a PQ layout the GPU code does not support
            log.warning("FAISS cannot run %s on the GPU (%s); using the CPU", self.factory, str(e).splitlines()[-1])
            self.use_gpu = False
            return
        self._index, self._on_gpu = gpu_index, True
        self._set_search_params()

    def _to_cpu(self) -> None:
        if self._on_gpu:
            self._index = _faiss().index_gpu_to_cpu(self._index)
            self._on_gpu = False
            self._set_search_params()

    # -- facts ---------------------------------------------------------------------------
    @property
    def factory(self) -> str:
        return self.spec.factory_string()

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def supports_remove(self) -> bool:
        """FAISS cannot remove vectors from an HNSW graph; every other kind here can."""
        return self.spec.type != "hnsw"

    def __len__(self) -> int:
        return len(self.doc_ids)

    # -- building ---------------------------------------------------------------------------
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
        if self.spec.type == "ivf-pq" and len(x) < 2**self.spec.nbits:
            raise ConfigError(
                f"ivf-pq with nbits={self.spec.nbits} needs at least {2**self.spec.nbits} training vectors; "
                f"got {len(x)}: lower nbits in the index spec"
            )
        self._to_gpu()
        self._index.train(x)

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
        self._to_gpu()
        self._index.add(x)
        self.doc_ids.extend(doc_ids)
        self._positions = None

    def position(self, doc_id: str) -> int | None:
        """The FAISS label of ``doc_id``, or None when it is not in the index."""
        if self._positions is None:
            self._positions = {d: i for i, d in enumerate(self.doc_ids)}
        return self._positions.get(doc_id)

    def remove(self, doc_ids: Iterable[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed.

        The remaining documents keep their order; an HNSW index refuses (FAISS cannot remove from it).
        """
        found = sorted({p for d in doc_ids if (p := self.position(d)) is not None})
        if not found:
            return 0
        if not self.supports_remove:
            raise ConfigError(
                f"FAISS cannot remove vectors from an HNSW index ({self.factory}); "
                "rebuild it with `index build`, or use a flat, IVF or SQ spec for indices that change"
            )
        faiss = _faiss()
        self._to_cpu()
        n_before = self._index.ntotal
        removed = int(self._index.remove_ids(np.asarray(found, dtype=np.int64)))
        if removed != len(found) or self._index.ntotal != n_before - len(found):
            raise RuntimeError(f"FAISS removed {removed} of {len(found)} vectors")  # pragma: no cover
        keep = np.ones(n_before, dtype=bool)
        keep[found] = False
        if self.spec.type.startswith("ivf"):
            # IVF lists keep their labels after remove_ids: renumber them to the new positions
            new_label = np.full(n_before, -1, dtype=np.int64)
            new_label[keep] = np.arange(int(keep.sum()), dtype=np.int64)
            ivf = faiss.extract_index_ivf(self._index)
            lists = ivf.invlists
            for list_no in range(ivf.nlist):
                size = lists.list_size(list_no)
                if not size:
                    continue
                labels = faiss.rev_swig_ptr(lists.get_ids(list_no), size).copy()
                codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * lists.code_size).copy()
                relabelled = np.ascontiguousarray(new_label[labels])
                lists.update_entries(list_no, 0, size, faiss.swig_ptr(relabelled), faiss.swig_ptr(codes))
        self.doc_ids = [d for d, k in zip(self.doc_ids, keep.tolist(), strict=True) if k]
        self._positions = None
        return removed

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The stored vectors of positions ``start:stop`` (decoded: approximate for PQ and SQ)."""
        faiss = _faiss()
        stop = len(self) if stop is None else stop
        self._to_cpu()
        if self.spec.type.startswith("ivf"):
            ivf = faiss.extract_index_ivf(self._index)
            ivf.make_direct_map()
            try:
                return self._index.reconstruct_n(start, stop - start)
            finally:
                ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        return self._index.reconstruct_n(start, stop - start)

    # -- searching ----------------------------------------------------------------------------
    def search_positions(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search: ``(scores [n, k], positions [n, k])``, position -1 for no hit."""
        x = self._check(embeddings, len(embeddings), "query")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        fetch = min(k, len(self.doc_ids))
        if fetch == 0:
            return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
        self._to_gpu()
        scores, idx = [], []
        for start in range(0, len(x), self.query_batch_size):
            s, i = self._index.search(x[start : start + self.query_batch_size], fetch)
            scores.append(s)
            idx.append(i)
        return np.concatenate(scores), np.concatenate(idx)

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
        scores, idx = self.search_positions(x, fetch)
        for row, qid in enumerate(query_ids):
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

    # -- files --------------------------------------------------------------------------------
    def manifest_fields(self) -> dict[str, Any]:
        """What ``manifest.json`` says about the index itself (callers add encoder, versions, build)."""
        return {
            "kind": self.kind,
            "spec": self.spec.model_dump(),
            "factory": self.factory,
            "dim": self.dim,
            "n_docs": len(self),
            "faiss": faiss_version(),
            "files": {"index": INDEX_FILE, "doc_ids": IDS_FILE},
        }

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write ``index.faiss``, ``doc_ids.txt`` and (last) ``manifest.json`` to a folder, each atomically.

        ``meta`` (encoder identity, versions, build facts) is merged into the manifest.
        """
        faiss = _faiss()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cpu_index = faiss.index_gpu_to_cpu(self._index) if self._on_gpu else self._index
        with atomic_path(path / INDEX_FILE) as tmp:
            faiss.write_index(cpu_index, str(tmp))
        write_lines(path / IDS_FILE, self.doc_ids)
        fields = self.manifest_fields()
        if meta:
            fields["files"] = {**fields["files"], **meta.get("files", {})}
            meta = {k: v for k, v in meta.items() if k != "files"}
        write_manifest(path, fields, meta)

    @classmethod
    def load(cls, path: str | Path, *, use_gpu: bool = True, manifest: dict[str, Any] | None = None) -> FaissIndex:
        faiss = _faiss()
        path = Path(path)
        manifest = manifest or read_manifest(path, kind=cls.kind)
        try:
            spec = FaissSpec.model_validate(manifest["spec"])
        except ValueError as e:
            raise DataError(path / MANIFEST_FILE, f"not a valid FAISS spec: {e}", field="spec") from None
        index = cls(int(manifest["dim"]), spec, use_gpu=use_gpu)
        index_file = path / INDEX_FILE
        if not index_file.is_file():
            raise DataError(index_file, "missing: the index folder is incomplete")
        try:
            index._index = faiss.read_index(str(index_file))
        except RuntimeError as e:
            raise DataError(index_file, f"unreadable FAISS index: {str(e).strip().splitlines()[-1]}") from None
        index._set_search_params()
        try:
            index.doc_ids = (path / IDS_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(path / IDS_FILE, "missing: the index folder is incomplete") from None
        if index._index.d != index.dim:
            raise DataError(path, f"{INDEX_FILE} holds {index._index.d}-dim vectors, {MANIFEST_FILE} says {index.dim}")
        if len(index.doc_ids) != index._index.ntotal or len(index.doc_ids) != manifest["n_docs"]:
            raise DataError(path, f"{IDS_FILE}, {INDEX_FILE} and {MANIFEST_FILE} disagree on the number of documents")
        return index
