"""Search a built index with text: the Python side of ``mbert-retrieval search``.

    from mbert_retrieval.retrieval.search import SearchIndex

    index = SearchIndex.load("out/scifact-hnsw")          # the encoder the manifest records
    for hit in index.search(["how do statins work"], k=10)[0]:
        print(hit.rank, hit.id, f"{hit.score:.4f}", hit.snippet)
    run = index.run({"q1": "first query", "q2": "second"}, k=1000)   # {qid: {docid: score}}

The encoder is rebuilt from the manifest (model path or hub id, max_seq_length, prompts,
normalisation) the first time text is searched, or taken from ``model=`` / ``encoder=``; either
way its dimension and fingerprint must match the index's (``indexes.manifest.check_encoder``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.types import Run, plural
from mbert_retrieval.indexes.manifest import MANIFEST_FILE, check_encoder, read_manifest


def _load_plaid(path: Path) -> Any:
    from mbert_retrieval.indexes.plaid import PlaidIndex

    return PlaidIndex.load(path)


def _load_voyager(path: Path) -> Any:
    from mbert_retrieval.indexes.voyager import VoyagerIndex

    return VoyagerIndex.load(path)


def _load_exact(path: Path) -> Any:
    from mbert_retrieval.indexes.maxsim import ExactMaxSimIndex

    return ExactMaxSimIndex.load(path)


MULTI_VECTOR_LOADERS = {"plaid": _load_plaid, "voyager": _load_voyager, "exact-maxsim": _load_exact}


@dataclass(frozen=True)
class Hit:
    """One search result: 1-based ``rank``, document ``id``, inner-product ``score``, text ``snippet``."""

    rank: int
    id: str
    score: float
    snippet: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "id": self.id, "score": self.score, "snippet": self.snippet}


def _refuse_blank(texts: Mapping[Any, Any], name: Callable[[Any], str]) -> None:
    """A blank query matches nothing in particular: refused, as blank documents are at build time;
    ``name(key)`` says which query it was."""
    for key, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{name(key)} is empty or blank; give the text to search for")


class SearchIndex:
    """A saved index (FAISS; or PLAID / Voyager / exact MaxSim built by ``eval``) with its encoder and
    snippets, searched with text or embeddings."""

    def __init__(self, path: Path, index: Any, manifest: dict[str, Any], snippets: Any = None) -> None:
        self.path = path
        self.index = index
        self.manifest = manifest
        self.snippets = snippets
        self._encoder: Any = None
        self._encoder_options: dict[str, Any] = {}
        self._positions: dict[str, int] | None = None

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        model: str | None = None,
        encoder: Any = None,
        device: str | None = None,
        batch_size: int | None = None,
        use_gpu: bool = True,
        progress: bool = False,
        trust_remote_code: bool = False,
    ) -> SearchIndex:
        """Open the index in ``path``. ``model`` (loaded now, with the recorded settings) or an
        ``encoder`` object replaces the recorded model; a mismatch is refused. ``trust_remote_code``
        is the user's consent (a manifest's own record of it is not enough)."""
        from mbert_retrieval.core.io import recover_interrupted_swap
        from mbert_retrieval.indexes.faiss_index import FaissIndex
        from mbert_retrieval.indexes.snippets import SNIPPET_OFFSETS_FILE, SNIPPETS_FILE, Snippets

        path = Path(path)
        recover_interrupted_swap(path, MANIFEST_FILE)
        manifest = read_manifest(path)
        if manifest["kind"] == "faiss":
            index = FaissIndex.load(path, use_gpu=use_gpu, manifest=manifest)
        elif manifest["kind"] in MULTI_VECTOR_LOADERS:
            index = MULTI_VECTOR_LOADERS[manifest["kind"]](path)
        else:
            raise ConfigError(f"{path}: unknown index kind {manifest['kind']!r}")
        snippets = None
        listed = (manifest.get("files") or {}).get("snippets")
        if (path / SNIPPETS_FILE).is_file() and (path / SNIPPET_OFFSETS_FILE).is_file():
            snippets = Snippets(path)
            if len(snippets) != manifest["n_docs"]:
                snippets.close()
                raise DataError(
                    path / SNIPPETS_FILE,
                    f"{plural(len(snippets), 'snippet')} for {plural(manifest['n_docs'], 'document')}",
                )
        elif listed:
            missing = SNIPPETS_FILE if not (path / SNIPPETS_FILE).is_file() else SNIPPET_OFFSETS_FILE
            raise DataError(path / missing, "missing: the index folder is incomplete")
        self = cls(path, index, manifest, snippets)
        self._encoder_options = {
            "device": device,
            "batch_size": batch_size,
            "progress": progress,
            "trust_remote_code": trust_remote_code,
        }
        if encoder is not None:
            check_encoder(manifest, encoder.describe(), path)
            self._encoder = encoder
        elif model is not None:
            self._load_encoder(model)
        return self

    def _load_encoder(self, model: str | None = None) -> Any:
        from mbert_retrieval.retrieval.rebuild import encoder_from_manifest

        self._encoder = encoder_from_manifest(self.manifest, self.path, model=model, **self._encoder_options)
        return self._encoder

    @property
    def encoder(self) -> Any:
        """The query encoder (built from the manifest on first use)."""
        return self._encoder if self._encoder is not None else self._load_encoder()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def doc_ids(self) -> list[str]:
        return self.index.doc_ids

    def search(self, queries: str | Sequence[str], k: int = 10) -> list[list[Hit]]:
        """Top-``k`` hits for each query text (a single string counts as one query)."""
        texts = [queries] if isinstance(queries, str) else list(queries)
        if not texts:
            return []
        _refuse_blank(dict(enumerate(texts)), lambda i: "the query" if len(texts) == 1 else f"query {i}")
        emb = self.encoder.encode_queries(texts, desc="encode queries")
        return self.search_embeddings(emb, k)

    def search_embeddings(self, embeddings: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top-``k`` hits for each query embedding (``float32 [n, dim]``, or token matrices for ColBERT)."""
        if self.manifest["kind"] != "faiss":  # multi-vector: the index answers with ids
            qids = [f"q{i}" for i in range(len(embeddings))]
            run = self.index.search(qids, embeddings, k)
            return [
                [
                    Hit(rank, doc, float(score), self._snippet_of(doc))
                    for rank, (doc, score) in enumerate(run[q].items(), start=1)
                ]
                for q in qids
            ]
        scores, positions = self.index.search_positions(np.asarray(embeddings, dtype=np.float32), k)
        results = []
        for row_scores, row_pos in zip(scores.tolist(), positions.tolist(), strict=True):
            hits = []
            for score, pos in zip(row_scores, row_pos, strict=True):
                if pos < 0:
                    continue
                text = self.snippets[pos] if self.snippets is not None else None
                hits.append(Hit(len(hits) + 1, self.index.doc_ids[pos], float(score), text))
            results.append(hits)
        return results

    def _snippet_of(self, doc_id: str) -> str | None:
        """A multi-vector hit's snippet (``index build`` writes them in the index's document order)."""
        if self.snippets is None:
            return None
        if self._positions is None:
            self._positions = {d: i for i, d in enumerate(self.index.doc_ids)}
        return self.snippets[self._positions[doc_id]]

    def run(self, queries: Mapping[str, str], k: int = 1000) -> Run:
        """Search every query; the result in the BEIR / pytrec_eval shape ``{qid: {docid: score}}``."""
        qids = list(queries)
        if not qids:
            return {}
        _refuse_blank(queries, lambda qid: f"query id {qid!r}")
        emb = self.encoder.encode_queries([queries[q] for q in qids], desc="encode queries")
        return self.index.search(qids, emb, k)

    def close(self) -> None:
        if self.snippets is not None:
            self.snippets.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
