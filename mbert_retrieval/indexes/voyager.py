"""Voyager (HNSW) over ColBERT token vectors, with ``voyager.Index`` called directly; candidates are
re-ranked by exact MaxSim.

The one module that imports voyager. Every document token vector goes into one cosine HNSW index,
under id 0..T-1 in the order added (the ids PyLate's Voyager got from voyager's own numbering), so a
token id maps to its document through the token offsets of the exact MaxSim store kept beside it
(``np.searchsorted``; no id mapping is stored). Each query token fetches its ``candidates`` nearest
document tokens; the documents they belong to are scored exactly against the full query with our
own MaxSim, and the best ``k`` are returned. Insertion runs on every core (voyager's default, as
under PyLate), so the graph, though not the exact re-ranking, can differ between two builds of the
same vectors (one insertion thread gives identical files, about 1.8x slower on 2 cores).

Files: ``voyager/index.voyager`` (PyLate's path, so indices built through PyLate 1.6 still load; the
pickles PyLate wrote beside it are ignored) plus the exact store (``tokens.npy``, ``offsets.npy``,
``doc_ids.txt``) and ``manifest.json``. A Voyager file that cannot be loaded, or that disagrees with
the token store, is refused with one line saying how to rebuild the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.config import ExactMaxSimSpec, VoyagerSpec
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import atomic_path, write_lines
from mbert_retrieval.core.types import Run
from mbert_retrieval.indexes.manifest import read_manifest, write_manifest
from mbert_retrieval.indexes.maxsim import OFFSETS_FILE, ExactMaxSimIndex, top_k
from mbert_retrieval.indexes.plaid import rebuild_command

IDS_FILE = "doc_ids.txt"
VOYAGER_FILE = Path("voyager") / "index.voyager"  # PyLate's layout: <folder>/voyager/index.voyager


def _voyager() -> Any:
    try:
        import voyager
    except ImportError as e:
        raise ConfigError("the Voyager index needs `pip install voyager`") from e
    return voyager


class VoyagerIndex:
    """Token vectors in a Voyager HNSW index under ``folder``; candidates re-ranked by exact MaxSim."""

    kind = "voyager"

    def __init__(self, dim: int, spec: VoyagerSpec | None, folder: str | Path, *, create: bool = True) -> None:
        """A new, empty index (``create``), or a shell for ``load`` to fill."""
        self.dim = dim
        self.spec = spec or VoyagerSpec()
        self.folder = Path(folder)
        voyager = _voyager()
        self._hnsw: Any = None
        if create:
            self._hnsw = voyager.Index(
                voyager.Space.Cosine, num_dimensions=dim, M=self.spec.M, ef_construction=self.spec.ef_construction
            )
        self._exact = ExactMaxSimIndex(dim, ExactMaxSimSpec())
        self._offsets: list[int] = [0]  # token id range [offsets[i], offsets[i + 1]) is document i

    @property
    def doc_ids(self) -> list[str]:
        return self._exact.doc_ids

    def __len__(self) -> int:
        return len(self._exact)

    @property
    def n_tokens(self) -> int:
        return self._offsets[-1]

    def add(self, doc_ids: Sequence[str], embeddings: Sequence[np.ndarray]) -> None:
        """Add one ``[tokens, dim]`` matrix per document; its tokens get the next ids in order."""
        self._exact.add(doc_ids, embeddings)  # validates shapes first
        if not len(embeddings):
            return
        vectors = np.concatenate([np.asarray(m, dtype=np.float32) for m in embeddings])
        start = self.n_tokens
        self._hnsw.add_items(vectors, ids=range(start, start + len(vectors)))
        for m in embeddings:
            self._offsets.append(self._offsets[-1] + len(m))

    def search(
        self, query_ids: Sequence[str], embeddings: Sequence[np.ndarray], k: int, *, ignore_identical_ids: bool = False
    ) -> Run:
        """Top ``k`` documents per query (``{qid: {docid: score}}``, best first), scored by exact MaxSim."""
        if len(query_ids) != len(embeddings):
            raise ValueError(f"{len(query_ids)} query ids but {len(embeddings)} query matrices")
        if not len(self) or not len(query_ids):
            return {qid: {} for qid in query_ids}
        queries = [np.asarray(q, dtype=np.float32) for q in embeddings]
        per_token = min(self.spec.candidates, self.n_tokens)  # voyager refuses k > its size
        token_ids, _ = self._hnsw.query(
            np.concatenate(queries), k=per_token, query_ef=max(self.spec.ef_search, per_token)
        )
        docs_of_tokens = np.searchsorted(np.asarray(self._offsets), token_ids.astype(np.int64), side="right") - 1
        bounds = np.cumsum([0] + [len(q) for q in queries])
        run: Run = {}
        for i, (qid, q) in enumerate(zip(query_ids, queries, strict=True)):
            candidates = np.unique(docs_of_tokens[bounds[i] : bounds[i + 1]]).tolist()
            if ignore_identical_ids:
                candidates = [c for c in candidates if self.doc_ids[c] != qid]
            scores = self._exact.score(q, candidates)
            run[qid] = {self.doc_ids[candidates[j]]: float(scores[j]) for j in top_k(scores, k)}
        return run

    def save(self, path: str | Path | None = None, meta: dict[str, Any] | None = None) -> None:
        """Write the Voyager file, the exact token store and ``manifest.json`` (the folder is fixed)."""
        if path is not None and Path(path).resolve() != self.folder.resolve():
            raise ValueError(f"a Voyager index lives where it was built ({self.folder}), not in {path}")
        with atomic_path(self.folder / VOYAGER_FILE) as tmp:
            self._hnsw.save(str(tmp))
        self._exact.save_arrays(self.folder)
        write_lines(self.folder / IDS_FILE, self.doc_ids)
        fields = {"kind": self.kind, "spec": self.spec.model_dump(), "dim": self.dim, "n_docs": len(self)}
        write_manifest(self.folder, fields, meta)

    @classmethod
    def load(cls, path: str | Path) -> VoyagerIndex:
        """Open a saved index; a Voyager file that cannot be used is refused with how to rebuild."""
        manifest = read_manifest(path, kind=cls.kind)
        index = cls(int(manifest["dim"]), VoyagerSpec.model_validate(manifest["spec"]), path, create=False)
        index._exact.load_arrays(path)
        if len(index.doc_ids) != manifest["n_docs"]:
            raise DataError(path, f"{IDS_FILE} and the manifest disagree on the number of documents")
        index._offsets = np.load(Path(path) / OFFSETS_FILE).astype(np.int64).tolist()
        file = index.folder / VOYAGER_FILE
        if not file.is_file():
            raise _unloadable(index.folder, manifest, f"{VOYAGER_FILE.as_posix()} is missing")
        voyager = _voyager()
        try:
            index._hnsw = voyager.Index.load(str(file))
        except Exception as e:  # whatever voyager raises on a file it cannot read
            raise _unloadable(index.folder, manifest, _first_line(e)) from None
        hnsw = index._hnsw
        if hnsw.num_dimensions != index.dim or hnsw.space != voyager.Space.Cosine:
            found = f"{hnsw.space.name} over {hnsw.num_dimensions} dims, not Cosine over {index.dim}"
            raise _unloadable(index.folder, manifest, f"{VOYAGER_FILE.as_posix()} is {found}")
        if hnsw.num_elements != index.n_tokens or (index.n_tokens and (index.n_tokens - 1) not in hnsw):
            raise _unloadable(
                index.folder,
                manifest,
                f"{VOYAGER_FILE.as_posix()} holds {hnsw.num_elements} token vectors, "
                f"not ids 0..{index.n_tokens - 1} like {OFFSETS_FILE}",
            )
        return index


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _unloadable(folder: Path, manifest: dict[str, Any], reason: str) -> DataError:
    from importlib.metadata import version

    return DataError(
        folder,
        f"the Voyager index cannot be loaded by voyager {version('voyager')} ({reason}); "
        f"rebuild it: {rebuild_command(folder, manifest, 'voyager')}",
    )
