"""Voyager (HNSW) over ColBERT token vectors, through ``pylate.indexes.Voyager``; candidates are
re-ranked by exact MaxSim.

The one module that imports ``pylate.indexes.Voyager`` (which needs ``voyager==2.1.0``). Each
query token fetches its ``candidates`` nearest document tokens; the documents they belong to are
scored exactly against the full query with our own MaxSim (PyLate's ``rank.rerank`` zero-pads
candidates of different lengths, which changes scores), and the best ``k`` are returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import ExactMaxSimSpec, VoyagerSpec
from ..errors import ConfigError
from ..io import write_lines
from ..types import Run
from .manifest import read_manifest, write_manifest
from .maxsim import ExactMaxSimIndex, top_k

IDS_FILE = "doc_ids.txt"


class VoyagerIndex:
    kind = "voyager"

    def __init__(self, dim: int, spec: VoyagerSpec | None, folder: str | Path, *, create: bool = True) -> None:
        self.dim = dim
        self.spec = spec or VoyagerSpec()
        self.folder = Path(folder)
        try:
            from pylate.indexes import Voyager
        except ImportError as e:
            raise ConfigError("the Voyager index needs `pip install voyager==2.1.0` (2.2.x breaks PyLate)") from e
        self.folder.mkdir(parents=True, exist_ok=True)
        self._voyager = Voyager(
            index_folder=str(self.folder),
            index_name="voyager",
            override=create,
            embedding_size=dim,
            M=self.spec.M,
            ef_construction=self.spec.ef_construction,
            ef_search=self.spec.ef_search,
        )
        self._exact = ExactMaxSimIndex(dim, ExactMaxSimSpec())
        self._position: dict[str, int] = {}

    @property
    def doc_ids(self) -> list[str]:
        return self._exact.doc_ids

    def __len__(self) -> int:
        return len(self._exact)

    def add(self, doc_ids: Sequence[str], embeddings: Sequence[np.ndarray]) -> None:
        self._exact.add(doc_ids, embeddings)  # validates shapes first
        self._voyager.add_documents(documents_ids=list(doc_ids), documents_embeddings=list(embeddings))
        start = len(self._position)
        self._position.update({d: start + i for i, d in enumerate(doc_ids)})

    def search(
        self, query_ids: Sequence[str], embeddings: Sequence[np.ndarray], k: int, *, ignore_identical_ids: bool = False
    ) -> Run:
        if len(query_ids) != len(embeddings):
            raise ValueError(f"{len(query_ids)} query ids but {len(embeddings)} query matrices")
        if not len(self):
            return {qid: {} for qid in query_ids}
        found = self._voyager([np.asarray(q, dtype=np.float32) for q in embeddings], k=self.spec.candidates)
        run: Run = {}
        for qid, q, per_token in zip(query_ids, embeddings, found["documents_ids"], strict=True):
            candidates = sorted({self._position[str(d)] for token_hits in per_token for d in token_hits})
            if ignore_identical_ids:
                candidates = [c for c in candidates if self.doc_ids[c] != qid]
            scores = self._exact.score(q, candidates)
            run[qid] = {self.doc_ids[candidates[j]]: float(scores[j]) for j in top_k(scores, k)}
        return run

    def save(self, path: str | Path | None = None, meta: dict | None = None) -> None:
        if path is not None and Path(path).resolve() != self.folder.resolve():
            raise ValueError(f"a Voyager index lives where it was built ({self.folder}), not in {path}")
        self._exact.save_arrays(self.folder)
        write_lines(self.folder / IDS_FILE, self.doc_ids)
        fields = {"kind": self.kind, "spec": self.spec.model_dump(), "dim": self.dim, "n_docs": len(self)}
        write_manifest(self.folder, fields, meta)

    @classmethod
    def load(cls, path: str | Path) -> VoyagerIndex:
        manifest = read_manifest(path, kind=cls.kind)
        index = cls(int(manifest["dim"]), VoyagerSpec.model_validate(manifest["spec"]), path, create=False)
        index._exact.load_arrays(path)
        index._position = {d: i for i, d in enumerate(index._exact.doc_ids)}
        return index
