"""PLAID over ColBERT token vectors, through fast-plaid as wrapped by ``pylate.indexes.PLAID``.

The one module that imports ``pylate.indexes.PLAID``. The backend writes its files into the index
folder as documents are added (chunk by chunk: the first chunk trains the centroids, later ones are
assigned to them, as PyLate does); ``save`` adds our ``doc_ids.txt`` and ``manifest.json``.

fast-plaid draws its k-means sample with ``torch.randperm`` from torch's *global* generator (fast-plaid
1.4.6 ``compute_kmeans``; the sample's order matters even when it holds every document), so the
same documents gave different centroids in different processes (SciFact, trained scifact-colbert:
nDCG@10 0.6585 from ``eval``, 0.6594 from ``index build`` on the same token vectors). Every add runs
under a forked generator seeded with ``KMEANS_SEED`` (fast-plaid's own k-means seed), so a build
depends only on its inputs, and the caller's random state is left as it was.

fast-plaid cannot train its codec on fewer than about 10 token vectors, and fails with a raw
``RuntimeError``; such a corpus gets a clear ``ConfigError`` here, or, with ``fallback: exact`` in
the spec, exact MaxSim instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..config import ExactMaxSimSpec, PlaidSpec
from ..errors import ConfigError
from ..io import write_lines
from ..types import Run
from .manifest import read_manifest, write_manifest
from .maxsim import ExactMaxSimIndex, check_token_matrices

log = logging.getLogger(__name__)

KMEANS_SEED = 42  # PyLate's / fast-plaid's default k-means seed, also used for torch's generator
MIN_TOKEN_VECTORS = 10  # below this fast-plaid fails: "Cannot train codec: no heldout samples"
IDS_FILE = "doc_ids.txt"


class PlaidIndex:
    kind = "plaid"

    def __init__(self, dim: int, spec: PlaidSpec | None, folder: str | Path, *, show_progress: bool = False) -> None:
        self.dim = dim
        self.spec = spec or PlaidSpec()
        self.folder = Path(folder)
        self.show_progress = show_progress
        self.doc_ids: list[str] = []
        self._plaid = None
        self._pending: list[tuple[str, np.ndarray]] = []  # held until there are enough token vectors
        self._exact: ExactMaxSimIndex | None = None  # the fallback, when chosen

    def __len__(self) -> int:
        return len(self.doc_ids)

    def _backend(self, override: bool):
        from pylate.indexes import PLAID

        self.folder.parent.mkdir(parents=True, exist_ok=True)
        return PLAID(
            index_folder=str(self.folder.parent),
            index_name=self.folder.name,
            override=override,
            nbits=self.spec.nbits,
            kmeans_niters=self.spec.kmeans_niters,
            n_ivf_probe=self.spec.n_ivf_probe,
            n_full_scores=self.spec.n_full_scores,
            device="cpu" if not _cuda() else None,
            show_progress=self.show_progress,
        )

    def add(self, doc_ids: Sequence[str], embeddings: Sequence[np.ndarray]) -> None:
        check_token_matrices(doc_ids, embeddings, self.dim)
        self.doc_ids.extend(doc_ids)
        if self._plaid is None:
            self._pending.extend(zip(doc_ids, embeddings, strict=True))
            if sum(len(m) for _, m in self._pending) >= MIN_TOKEN_VECTORS:
                self._flush()
        else:
            with _seeded_torch():
                self._plaid.add_documents(documents_ids=list(doc_ids), documents_embeddings=list(embeddings))

    def _flush(self) -> None:
        ids = [i for i, _ in self._pending]
        mats = [m for _, m in self._pending]
        backend = self._backend(override=True)
        try:
            with _seeded_torch():
                backend.add_documents(documents_ids=ids, documents_embeddings=mats)
        except RuntimeError as e:
            raise ConfigError(
                f"PLAID could not be built from {len(ids)} documents / {sum(len(m) for m in mats)} token vectors "
                f"({str(e).strip().splitlines()[0]}); use the exact-maxsim index or `fallback: exact` in the spec"
            ) from None
        self._plaid = backend
        self._pending = []

    def _finish(self) -> None:
        """Before searching or saving: a corpus too small for PLAID errors or falls back to exact."""
        if self._plaid is not None or not self._pending:
            return
        n_tokens = sum(len(m) for _, m in self._pending)
        if self.spec.fallback == "exact":
            log.warning("PLAID needs >= %d token vectors, the corpus has %d: exact MaxSim", MIN_TOKEN_VECTORS, n_tokens)
            self._exact = ExactMaxSimIndex(self.dim, ExactMaxSimSpec(dtype="float32"))
            self._exact.add([i for i, _ in self._pending], [m for _, m in self._pending])
            return
        raise ConfigError(
            f"PLAID needs at least {MIN_TOKEN_VECTORS} token vectors for its k-means; the corpus has {n_tokens}. "
            "Use the exact-maxsim index, or set `fallback: exact` in the PLAID spec"
        )

    def search(
        self, query_ids: Sequence[str], embeddings: Sequence[np.ndarray], k: int, *, ignore_identical_ids: bool = False
    ) -> Run:
        if len(query_ids) != len(embeddings):
            raise ValueError(f"{len(query_ids)} query ids but {len(embeddings)} query matrices")
        self._finish()
        if self._exact is not None:
            return self._exact.search(query_ids, embeddings, k, ignore_identical_ids=ignore_identical_ids)
        if self._plaid is None:
            return {qid: {} for qid in query_ids}
        fetch = min(k + (1 if ignore_identical_ids else 0), len(self.doc_ids))
        results = self._plaid([np.asarray(q, dtype=np.float32) for q in embeddings], k=fetch)
        run: Run = {}
        for qid, hits in zip(query_ids, results, strict=True):
            kept: dict[str, float] = {}
            for hit in hits:
                doc = str(hit["id"])
                if ignore_identical_ids and doc == qid:
                    continue
                kept[doc] = float(hit["score"])
                if len(kept) == k:
                    break
            run[qid] = kept
        return run

    def save(self, path: str | Path | None = None, meta: dict | None = None) -> None:
        """Write ``doc_ids.txt`` and ``manifest.json`` beside the backend's files (the folder is fixed)."""
        if path is not None and Path(path).resolve() != self.folder.resolve():
            raise ValueError(f"a PLAID index lives where it was built ({self.folder}), not in {path}")
        self._finish()
        if self._exact is not None:
            self._exact.save_arrays(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_lines(self.folder / IDS_FILE, self.doc_ids)
        fields = {"kind": self.kind, "spec": self.spec.model_dump(), "dim": self.dim, "n_docs": len(self)}
        fields["backend"] = "exact-maxsim fallback" if self._exact is not None else "fast-plaid"
        write_manifest(self.folder, fields, meta)

    @classmethod
    def load(cls, path: str | Path) -> PlaidIndex:
        manifest = read_manifest(path, kind=cls.kind)
        index = cls(int(manifest["dim"]), PlaidSpec.model_validate(manifest["spec"]), path)
        index.doc_ids = (Path(path) / IDS_FILE).read_text(encoding="utf-8").splitlines()
        if manifest.get("backend") == "exact-maxsim fallback":
            index._exact = ExactMaxSimIndex(index.dim, ExactMaxSimSpec(dtype="float32"))
            index._exact.load_arrays(path)
        else:
            index._plaid = index._backend(override=False)
        return index


@contextlib.contextmanager
def _seeded_torch() -> Iterator[None]:
    """torch's global generators forked and seeded for fast-plaid's k-means sample (see the module doc)."""
    import torch

    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if _cuda() else []):
        torch.manual_seed(KMEANS_SEED)
        yield


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
