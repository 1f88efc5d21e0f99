"""PLAID over ColBERT token vectors, with fast-plaid (``fast_plaid.search.FastPlaid``) called directly.

The one module that imports fast-plaid. Its files live in ``<folder>/fast_plaid_index/``, the layout
PyLate used, so indices built before the move off PyLate still load (the pickled id mappings PyLate
wrote beside them are ignored). The first chunk of documents added creates the index and trains the
centroids; later chunks go through fast-plaid's ``update`` with its defaults, as PyLate called it
(while the index holds at most 999 documents that rebuilds it from all of them, from the raw vectors
fast-plaid keeps for that; beyond, new documents are assigned to the trained centroids, which grow
from outliers once 100 documents are buffered). fast-plaid numbers documents 0..n-1 in the order
they were added; ``doc_ids.txt`` maps those numbers back to our ids. ``save`` writes ``doc_ids.txt``
and ``manifest.json`` beside the backend's folder.

fast-plaid 1.7 draws its k-means sample from a local generator seeded with ``KMEANS_SEED`` (1.4.6
used torch's global generator, so the same documents gave different centroids in different
processes), so a build depends only on its inputs. Its k-means still calls ``torch.manual_seed`` and
``np.random.seed`` on the *global* generators; every add runs with those states saved and restored,
so the caller's random state is left as it was.

fast-plaid cannot train its codec on fewer than about 10 token vectors; such a corpus gets a clear
``ConfigError`` here, or, with ``fallback: exact`` in the spec, exact MaxSim instead. An index whose
backend files fast-plaid cannot load is refused with one line saying how to rebuild it.

Search depth: fast-plaid, like ColBERT, scores ``n_full_scores`` candidates and keeps a quarter of them,
so ``scale_with_k`` raises ``n_full_scores`` to at least ColBERT's own setting for the ``k`` asked
(``full_scores_for``). ``exact_if_faster`` (the ``plaid-auto`` spec, eval's ColBERT default) holds the
documents (fp16) until the first search; on a CPU that search uses exact MaxSim instead when the cost
model (``estimated_seconds``, measured by ``benchmarks/search.py``) says building and searching PLAID
would take longer, as it does for every corpus with few queries per token vector. Corpora above
``exact_max_tokens`` token vectors, a GPU, or a save before any search (``index build``) build PLAID.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.config import ExactMaxSimSpec, PlaidSpec
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import write_lines
from mbert_retrieval.core.types import Run, plural
from mbert_retrieval.indexes.manifest import read_manifest, write_manifest
from mbert_retrieval.indexes.maxsim import OFFSETS_FILE, TOKENS_FILE, ExactMaxSimIndex, check_token_matrices

log = logging.getLogger(__name__)

KMEANS_SEED = 42  # fast-plaid's (and PyLate's) default seed for its k-means and codec
MAX_POINTS_PER_CENTROID = 256  # fast-plaid's default, as PyLate passed it
MIN_TOKEN_VECTORS = 10  # below this fast-plaid fails: "Cannot train codec: no heldout samples"
IDS_FILE = "doc_ids.txt"
BACKEND_DIR = "fast_plaid_index"  # PyLate's name for the folder, kept so older indices load
QUERIES_PER_SEARCH_THREAD = 10  # fast-plaid's own split: at least 10 queries per CPU search thread
SEARCH_TORCH_THREADS = 1  # torch's threads during a CPU search (measured: _search_torch_threads)


class PlaidIndex:
    """Token vectors in a fast-plaid index under ``folder``; top-k by PLAID's approximate MaxSim."""

    kind = "plaid"

    def __init__(self, dim: int, spec: PlaidSpec | None, folder: str | Path, *, show_progress: bool = False) -> None:
        self.dim = dim
        self.spec = spec or PlaidSpec()
        self.folder = Path(folder)
        self.show_progress = show_progress
        self._cap_warned = False  # the n_full_scores / 4 cap on hits is said once
        self._scale_said = False  # and n_full_scores raised for a deeper k
        self.doc_ids: list[str] = []
        self._plaid: Any = None  # fast_plaid.search.FastPlaid, once created or loaded
        self._pending: list[tuple[str, np.ndarray]] = []  # held until there are enough token vectors
        self._exact: ExactMaxSimIndex | None = None  # the fallback, when chosen

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def backend_folder(self) -> Path:
        """Where fast-plaid keeps its files: ``<folder>/fast_plaid_index``."""
        return self.folder / BACKEND_DIR

    def _backend(self) -> Any:
        import torch
        from fast_plaid.search import FastPlaid

        # None: every visible GPU (fast-plaid splits queries across them); else the CPU
        device = None if torch.cuda.is_available() else "cpu"
        return FastPlaid(index=str(self.backend_folder), device=device)

    def add(self, doc_ids: Sequence[str], embeddings: Sequence[np.ndarray]) -> None:
        """Add one ``[tokens, dim]`` matrix per document; held back until there are ``MIN_TOKEN_VECTORS``
        (with ``exact_if_faster`` on a CPU: until the first search, or ``exact_max_tokens``)."""
        check_token_matrices(doc_ids, embeddings, self.dim)
        self.doc_ids.extend(doc_ids)
        if self._exact is not None:  # exact MaxSim was chosen: it takes the new documents too
            self._exact.add(doc_ids, embeddings)
        elif self._plaid is None:
            holding = self._may_choose_exact()
            if holding:  # held as fp16 until the first search decides (what exact MaxSim stores anyway)
                embeddings = [np.asarray(m, dtype=np.float16) for m in embeddings]
            self._pending.extend(zip(doc_ids, embeddings, strict=True))
            n_tokens = sum(len(m) for _, m in self._pending)
            if n_tokens > (self.spec.exact_max_tokens if holding else MIN_TOKEN_VECTORS - 1):
                self._flush()
        else:
            with _global_rng_kept():
                self._plaid.update(
                    documents_embeddings=_tensors(embeddings),
                    kmeans_niters=self.spec.kmeans_niters,
                    max_points_per_centroid=MAX_POINTS_PER_CENTROID,
                    seed=KMEANS_SEED,
                )

    def _flush(self) -> None:
        """Create the fast-plaid index from the pending documents (this trains the centroids)."""
        mats = [m for _, m in self._pending]
        if self.backend_folder.exists():  # a fresh index: nothing left from an earlier build
            shutil.rmtree(self.backend_folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        backend = self._backend()
        try:
            with _global_rng_kept():
                backend.create(
                    documents_embeddings=_tensors(mats),
                    kmeans_niters=self.spec.kmeans_niters,
                    max_points_per_centroid=MAX_POINTS_PER_CENTROID,
                    nbits=self.spec.nbits,
                    seed=KMEANS_SEED,
                )
        except (RuntimeError, ValueError) as e:
            raise ConfigError(
                f"PLAID could not be built from {plural(len(mats), 'document')} / "
                f"{plural(sum(len(m) for m in mats), 'token vector')} "
                f"({_first_line(e)}); use the exact-maxsim index or `fallback: exact` in the spec"
            ) from None
        self._plaid = backend
        self._pending = []

    def _may_choose_exact(self) -> bool:
        """``exact_if_faster`` on a CPU: documents are held until the first search picks the backend."""
        if not self.spec.exact_if_faster:
            return False
        import torch

        return not torch.cuda.is_available()  # on a GPU fast-plaid builds and searches far faster

    def _finish(self, n_queries: int | None = None, k: int = 10) -> None:
        """Before searching (``n_queries`` queries for the top ``k``) or saving: build PLAID from the held
        documents, or, with ``exact_if_faster``, use exact MaxSim where it is estimated faster for this
        search; a corpus too small for PLAID errors or falls back to exact."""
        if self._plaid is not None or self._exact is not None or not self._pending:
            return
        n_tokens = sum(len(m) for _, m in self._pending)
        if n_queries and self._may_choose_exact():
            exact_s, plaid_s = estimated_seconds(n_tokens, n_queries, full_scores_for(self.spec, k))
            if exact_s <= plaid_s or n_tokens < MIN_TOKEN_VECTORS:
                log.info(
                    "%s / %s, %s: exact MaxSim (estimated %.0f s on this CPU) rather than building and searching "
                    "PLAID (%.0f s); the spec's exact_if_faster",
                    plural(len(self.doc_ids), "document"),
                    plural(n_tokens, "token vector"),
                    plural(n_queries, "query"),
                    exact_s,
                    plaid_s,
                )
                self._use_exact(ExactMaxSimSpec())
                return
        if n_tokens >= MIN_TOKEN_VECTORS:
            self._flush()
            return
        if self.spec.fallback == "exact":
            log.warning("PLAID needs >= %d token vectors, the corpus has %d: exact MaxSim", MIN_TOKEN_VECTORS, n_tokens)
            self._use_exact(ExactMaxSimSpec(dtype="float32"))
            return
        raise ConfigError(
            f"PLAID needs at least {MIN_TOKEN_VECTORS} token vectors for its k-means; the corpus has {n_tokens}. "
            "Use the exact-maxsim index, or set `fallback: exact` in the PLAID spec"
        )

    def prepare(self, n_queries: int | None = None, k: int = 10) -> None:
        """Build now what the first search or ``save`` would otherwise build (so callers can time it):
        PLAID from the held documents, or exact MaxSim where ``exact_if_faster`` chooses it for
        ``n_queries`` queries (``None``: searches to come, PLAID)."""
        self._finish(n_queries, k)

    def _use_exact(self, spec: ExactMaxSimSpec) -> None:
        self._exact = ExactMaxSimIndex(self.dim, spec)
        self._exact.add([i for i, _ in self._pending], [m for _, m in self._pending])
        self._pending = []

    @property
    def backend(self) -> str:
        """What searches: ``"fast-plaid"``, or ``"exact-maxsim"`` (fallback or ``exact_if_faster``)."""
        return "exact-maxsim" if self._exact is not None else "fast-plaid"

    def search(
        self, query_ids: Sequence[str], embeddings: Sequence[np.ndarray], k: int, *, ignore_identical_ids: bool = False
    ) -> Run:
        """Top ``k`` documents per query (``{qid: {docid: score}}``, best first), by PLAID's scores."""
        if len(query_ids) != len(embeddings):
            raise ValueError(f"{len(query_ids)} query ids but {len(embeddings)} query matrices")
        if not query_ids:  # nothing to search: nothing built or chosen yet either
            return {}
        fetch = min(k + (1 if ignore_identical_ids else 0), len(self.doc_ids))
        self._finish(len(query_ids), k)
        if self._exact is not None:
            return self._exact.search(query_ids, embeddings, k, ignore_identical_ids=ignore_identical_ids)
        if self._plaid is None or fetch <= 0:
            return {qid: {} for qid in query_ids}
        full_scores = full_scores_for(self.spec, k)  # the table's k: one hit more for a skipped id is no depth
        if full_scores != self.spec.n_full_scores and not self._scale_said:
            self._scale_said = True
            log.info(
                "PLAID: n_full_scores %d for the top %d (the spec has %d; scale_with_k, ColBERT's table)",
                full_scores,
                k,
                self.spec.n_full_scores,
            )
        with _search_torch_threads():
            results = self._plaid.search(
                queries_embeddings=_tensors(embeddings),
                top_k=fetch,
                n_ivf_probe=self.spec.n_ivf_probe,
                n_full_scores=full_scores,
                show_progress=self.show_progress,
                n_processes=_search_threads(len(query_ids)),
            )
        run: Run = {}
        for qid, hits in zip(query_ids, results, strict=True):
            kept: dict[str, float] = {}
            for plaid_id, score in hits:
                doc = self.doc_ids[plaid_id]
                if ignore_identical_ids and doc == qid:
                    continue
                kept[doc] = float(score)
                if len(kept) == k:
                    break
            run[qid] = kept
        self._warn_if_capped(run, k, len(self.doc_ids), full_scores)
        return run

    def _warn_if_capped(self, run: Run, k: int, n_docs: int, full_scores: int) -> None:
        """fast-plaid scores ``n_full_scores`` candidates and keeps a quarter of them: a deeper ``k`` gets
        fewer hits (with ``scale_with_k`` off). Said once per index, with the setting that raises the cap."""
        cap = max(1, full_scores // 4)
        if self._cap_warned or k <= cap or not any(len(hits) < min(k, n_docs) for hits in run.values()):
            return
        self._cap_warned = True
        log.warning(
            "PLAID returned at most %d of the %d hits asked per query: it keeps n_full_scores / 4 candidates "
            "(n_full_scores %d). For deeper runs set n_full_scores >= %d in the index spec (slower), "
            "or use exact-maxsim",
            cap,
            k,
            full_scores,
            4 * min(k, n_docs),
        )

    def save(self, path: str | Path | None = None, meta: dict[str, Any] | None = None) -> None:
        """Write ``doc_ids.txt`` and ``manifest.json`` beside the backend's files (the folder is fixed)."""
        if path is not None and Path(path).resolve() != self.folder.resolve():
            raise ValueError(f"a PLAID index lives where it was built ({self.folder}), not in {path}")
        self._finish()
        if self._exact is not None:
            self._exact.save_arrays(self.folder)
            if self.backend_folder.exists():  # an earlier build's PLAID files in a reused folder
                shutil.rmtree(self.backend_folder)
        else:
            for name in (TOKENS_FILE, OFFSETS_FILE):  # an earlier exact choice's arrays in a reused folder
                (self.folder / name).unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_lines(self.folder / IDS_FILE, self.doc_ids)
        fields = {"kind": self.kind, "spec": self.spec.model_dump(), "dim": self.dim, "n_docs": len(self)}
        fields["backend"] = "exact-maxsim fallback" if self._exact is not None else "fast-plaid"
        if self._exact is not None:
            fields["exact_dtype"] = self._exact.spec.dtype
        write_manifest(self.folder, fields, meta)

    @classmethod
    def load(cls, path: str | Path) -> PlaidIndex:
        """Open a saved index; backend files fast-plaid cannot load are refused with how to rebuild."""
        manifest = read_manifest(path, kind=cls.kind)
        index = cls(int(manifest["dim"]), PlaidSpec.model_validate(manifest["spec"]), path)
        try:
            index.doc_ids = (Path(path) / IDS_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(Path(path) / IDS_FILE, "missing: the index folder is incomplete") from None
        if manifest.get("backend") == "exact-maxsim fallback":
            dtype = manifest.get("exact_dtype", "float32")  # indices before exact_if_faster: float32
            index._exact = ExactMaxSimIndex(index.dim, ExactMaxSimSpec(dtype=dtype))
            index._exact.load_arrays(path)
        else:
            index._plaid = index._open_backend(manifest)
        return index

    def _open_backend(self, manifest: dict[str, Any]) -> Any:
        """The saved fast-plaid index, checked to load and to hold one entry per id in ``doc_ids.txt``."""
        meta_file = self.backend_folder / "metadata.json"
        try:
            n_backend = json.loads(meta_file.read_text(encoding="utf-8")).get("num_documents")
        except FileNotFoundError:
            raise _unloadable(self.folder, manifest, f"{BACKEND_DIR}/metadata.json is missing") from None
        except (OSError, ValueError, AttributeError) as e:
            raise _unloadable(self.folder, manifest, f"{BACKEND_DIR}/metadata.json: {_first_line(e)}") from None
        if n_backend != len(self.doc_ids):
            raise _unloadable(
                self.folder,
                manifest,
                f"fast-plaid holds {plural(n_backend, 'document')}, {IDS_FILE} lists {len(self.doc_ids)}",
            )
        printed = io.StringIO()  # fast-plaid prints its loading errors and leaves the index unloaded
        try:
            with contextlib.redirect_stdout(printed):
                backend = self._backend()
        except Exception as e:  # whatever fast-plaid raises on files it cannot read
            raise _unloadable(self.folder, manifest, _first_line(e)) from None
        if not backend.indices or any(idx is None for idx in backend.indices.values()):
            reason = _first_line(printed.getvalue()).removeprefix("Critical Error loading index from disk: ")
            raise _unloadable(self.folder, manifest, reason)
        return backend


# The cost model behind ``exact_if_faster`` (CPU; benchmarks/search.py on a 2-core AVX-512 EPYC, 2026-12-04,
# 128-dim token vectors; the figures are in docs/indexing.md). Exact MaxSim, queries in batches: about
# EXACT_NS_PER_TOKEN_QUERY per document token vector and query (79 ns at 816k token vectors, 95 at 3.2M).
# PLAID: about PLAID_BUILD_US_PER_TOKEN per token vector to build (k-means, compression, save: 260 us at
# 816k, 404 at 3.2M, as the centroids grow; the lower figure favours PLAID), then PLAID_QUERY_MS +
# PLAID_MS_PER_FULL_SCORE * n_full_scores per query (batched: 27-33 ms at 256, 61 at 1024, 526 at 8192).
# So exact MaxSim wins unless there are more than about 2,700 queries (260 us / 95 ns) per search.
EXACT_NS_PER_TOKEN_QUERY = 95.0
PLAID_BUILD_US_PER_TOKEN = 260.0
PLAID_QUERY_MS = 10.0
PLAID_MS_PER_FULL_SCORE = 0.063


def estimated_seconds(n_tokens: int, n_queries: int, full_scores: int) -> tuple[float, float]:
    """Estimated (exact MaxSim, PLAID build + search) seconds for ``n_queries`` queries against ``n_tokens``
    document token vectors on a CPU; only their ratio is used."""
    exact = n_queries * n_tokens * EXACT_NS_PER_TOKEN_QUERY * 1e-9
    plaid = n_tokens * PLAID_BUILD_US_PER_TOKEN * 1e-6
    plaid += n_queries * (PLAID_QUERY_MS + PLAID_MS_PER_FULL_SCORE * full_scores) * 1e-3
    return exact, plaid


def full_scores_for(spec: PlaidSpec, k: int) -> int:
    """fast-plaid's ``n_full_scores`` for a top-``k`` search: the spec's, raised (``scale_with_k``) to at
    least ColBERT's own setting for that depth (``colbert/searcher.py``: ``ndocs`` 256 up to k 10, 1024 up
    to k 100, max(4096, 4k) beyond). fast-plaid, like ColBERT, keeps ``n_full_scores / 4`` candidates, so
    without it a deeper ``k`` gets fewer hits than asked."""
    if not spec.scale_with_k:
        return spec.n_full_scores
    floor = 256 if k <= 10 else 1024 if k <= 100 else max(4096, 4 * k)
    return max(spec.n_full_scores, floor)


def _search_threads(n_queries: int) -> int:
    """CPU search threads (fast-plaid's ``n_processes``, joblib threads over chunks of queries; ignored on GPU).

    One per core, with at least ``QUERIES_PER_SEARCH_THREAD`` queries each. Measured on a 2-core CPU
    (torch using 2 threads), 300 queries of 32 tokens against 2000 documents / 80k token vectors
    (dim 128, nbits 4), n_ivf_probe 8, two runs each: n_full_scores 8192, 1 thread 120-128 ms/query,
    2 threads 93-99; n_full_scores 1024, 28-36 vs 26-33 ms/query, 4 threads 29-31; the same results
    in every case. With torch set to 1 thread: 51 vs 26 ms/query. More threads than cores gain nothing.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_queries // QUERIES_PER_SEARCH_THREAD))


@contextlib.contextmanager
def _search_torch_threads() -> Iterator[None]:
    """torch's intra-op threads set to ``SEARCH_TORCH_THREADS`` during a CPU search, then restored.

    fast-plaid's CPU search runs torch ops inside its joblib threads; torch's own threads on top of them
    only contend. benchmarks/threads.py (2-core EPYC, 2,000 SciFact documents / 316k token vectors, the
    plaid spec): torch 1 thread vs 2, single query p50 88 vs 116-130 ms, 300 queries in one call with 2
    search threads 45.7 vs 55.1 ms a query. Not on a GPU, where fast-plaid runs on the device."""
    import torch

    before = torch.get_num_threads()
    if torch.cuda.is_available() or before == SEARCH_TORCH_THREADS:
        yield
        return
    torch.set_num_threads(SEARCH_TORCH_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tensors(matrices: Sequence[np.ndarray]) -> list[Any]:
    """float32 CPU tensors, one per matrix, as fast-plaid takes them (no copy for float32 arrays)."""
    import torch

    return [torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) for m in matrices]


def _first_line(error: BaseException | str) -> str:
    """The first non-blank line of an error (or of printed text): messages here are one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines:
        return lines[0]
    return type(error).__name__ if isinstance(error, BaseException) else "fast-plaid could not load its files"


def _unloadable(folder: Path, manifest: dict[str, Any], reason: str) -> DataError:
    """One line: the backend files cannot be used, and the command that rebuilds the index."""
    from importlib.metadata import version

    return DataError(
        folder,
        f"the PLAID index cannot be loaded by fast-plaid {version('fast-plaid')} ({reason}); "
        f"rebuild it: {rebuild_command(folder, manifest, 'plaid')}",
    )


def rebuild_command(folder: Path, manifest: dict[str, Any], default_spec: str) -> str:
    """The ``mbert-retrieval index build`` command that rebuilds the index in ``folder`` (from its manifest)."""
    model = (manifest.get("encoder_load") or {}).get("model") or (manifest.get("encoder") or {}).get("name")
    corpus = (manifest.get("build") or {}).get("corpus")
    spec = manifest.get("spec_name") or default_spec
    return (
        f"mbert-retrieval index build --model {model or 'MODEL'} --corpus {corpus or 'CORPUS'} "
        f"--spec {spec} --out {folder} --overwrite"
    )


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """torch's (CPU and CUDA) and numpy's global random states restored afterwards: fast-plaid's
    k-means seeds them (``FastKMeans.train``: ``torch.manual_seed``, ``np.random.seed``)."""
    import torch

    state = np.random.get_state()  # the legacy global generator, which fast-plaid seeds
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(state)
