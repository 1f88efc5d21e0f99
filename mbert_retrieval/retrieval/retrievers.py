"""Our engine's retrievers: an encoder with an index, BM25, a fusion of earlier runs, a built index.

Each is a :class:`~mbert_retrieval.retrieval.engine.Retriever`: it says what ``results.json`` records of
it and evaluates a suite entry one loaded dataset (one subset) at a time with the function of its
kind, which searches, scores and writes ``runs/<dataset>.trec`` and ``per_query/<dataset>.json``:

- :func:`evaluate_dataset`: encode the corpus (through the shard cache, so a killed run resumes), add
  it to the index of the spec (exact FAISS for dense models and PLAID for ColBERT by default), encode
  the queries, search the top ``k``;
- :func:`evaluate_bm25_dataset`: bm25s instead of an encoder (``bm25.py``);
- :func:`evaluate_fused_dataset`: the runs of earlier result folders (and BM25 computed on the fly)
  fused with ``fusion.py``;
- :func:`evaluate_built_index`: the queries searched in an index from ``index build``, no corpus encoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mbert_retrieval.config import BM25Config, DatasetSpec, EvalConfig, FusionConfig, IndexSpec, IndexSpecFile
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import write_json
from mbert_retrieval.core.types import RetrievalDataset, Run
from mbert_retrieval.core.versions import versions
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.encoders import Encoder, log_truncated
from mbert_retrieval.encoders.cache import encode_into_index, encode_rank_shards
from mbert_retrieval.indexes import make_index
from mbert_retrieval.results.metrics import Evaluation, evaluate
from mbert_retrieval.results.runs import read_run, write_run
from mbert_retrieval.results.store import PER_QUERY_DIR, RESULTS_FILE, combine_subsets, read_results
from mbert_retrieval.retrieval.engine import Described

log = logging.getLogger(__name__)


def _searchable_index_meta(
    ds: RetrievalDataset, index: Any, encoder: Encoder, spec_name: str | None, seconds: dict[str, float]
) -> dict[str, Any]:
    """What ``index build`` records in a manifest, for the PLAID / Voyager index an eval leaves in
    ``OUT/indices/<dataset>/`` (so ``index info`` and ``search`` show it as they show a built one);
    writes the snippets beside it, in the index's document order."""
    from mbert_retrieval.encoders.record import recorded_model
    from mbert_retrieval.indexes.snippets import SNIPPET_OFFSETS_FILE, SNIPPETS_FILE, snippet_lines, write_snippets

    text_of = dict(zip(ds.corpus_ids, ds.corpus_texts, strict=True))
    write_snippets(index.folder, snippet_lines(text_of[d] for d in index.doc_ids))
    return {
        "spec_name": spec_name,
        "files": {"snippets": SNIPPETS_FILE, "snippet_offsets": SNIPPET_OFFSETS_FILE},
        "encoder": encoder.describe(),
        "encoder_load": {"kind": encoder.kind, "model": recorded_model(encoder.name)},
        "versions": versions(),
        "build": {
            "corpus": f"{ds.source} ({ds.name}, {ds.split})" if ds.source else ds.name,
            "by": "eval",
            "seconds": {
                "encode": round(seconds["encode_documents"], 3),
                "index": round(seconds["index"], 3),
                "total": round(seconds["encode_documents"] + seconds["index"], 3),
            },
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@contextlib.contextmanager
def open_built_index(cfg: EvalConfig, specs: list[Any], *, progress: bool) -> Iterator[Any]:
    """The ``SearchIndex`` of ``cfg.index_dir`` with its recorded encoder (or ``cfg.encoder.model``,
    checked against the index); it holds one corpus, so one dataset without subsets."""
    from mbert_retrieval.retrieval.search import SearchIndex

    assert cfg.index_dir is not None
    if len(specs) != 1 or specs[0].subsets:
        raise ConfigError("--index-dir holds one corpus: give one dataset (--datasets NAME, or one --beir DIR)")
    enc = cfg.encoder
    with SearchIndex.load(
        cfg.index_dir,
        model=enc.model if enc is not None else None,
        device=enc.device if enc is not None else None,
        batch_size=enc.batch_size if enc is not None else None,
        progress=progress,
        trust_remote_code=bool(enc and enc.trust_remote_code),
    ) as index:
        yield index


def _built_index_facts(built: Any) -> dict[str, Any]:
    m = built.manifest
    return {
        "name": "index-dir",
        "path": str(Path(built.path).absolute()),
        "kind": m["kind"],
        "spec_name": m.get("spec_name"),
        "n_docs": m["n_docs"],
        "created": m.get("created"),
    }


def evaluate_built_index(
    ds: RetrievalDataset,
    built: Any,
    *,
    metrics: list[str],
    top_k: int,
    ignore_identical_ids: bool,
    run_path: Path,
    per_query_path: Path | None = None,
) -> dict[str, Any]:
    """Search a built index (``SearchIndex``) with the dataset's queries and score the run: no corpus
    encoding. Documents judged relevant but absent from the index, and indexed documents the dataset's
    corpus does not hold, are counted in the record's warnings."""
    log.info("%s", ds.summary())
    indexed = set(built.doc_ids)
    corpus = set(ds.corpus_ids)
    if not indexed & corpus:
        raise DataError(
            built.path, f"holds none of the {ds.n_docs:,} documents of {ds.name}; was it built from another corpus?"
        )
    judged = {d for docs in ds.qrels.values() for d, rel in docs.items() if rel > 0}
    warnings = dict(ds.warnings)
    if missing := len(judged - indexed):
        warnings["relevant documents not in the index (never retrieved)"] = missing
    if extra := len(indexed - corpus):
        warnings["indexed documents not in the dataset's corpus"] = extra
    for what, n in warnings.items():
        if what not in ds.warnings:
            log.warning("%s: %d %s", ds.name, n, what)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    query_ids = list(ds.queries)
    query_emb = built.encoder.encode_queries([ds.queries[q] for q in query_ids], desc=f"encode {ds.name} queries")
    seconds["encode_queries"] = time.perf_counter() - t
    t = time.perf_counter()
    run = built.index.search(query_ids, query_emb, top_k, ignore_identical_ids=ignore_identical_ids)
    seconds["search"] = time.perf_counter() - t
    ev = _score_and_write(ds, run, metrics, run_path, per_query_path, Path(built.path).name)
    record = _lexical_record(ds, ev, top_k, ignore_identical_ids, seconds)
    record.update(
        {
            "n_docs": len(indexed),
            "truncated_documents": None,  # counted when the index was built
            "max_seq_length": getattr(built.encoder, "max_seq_length", None),
            "index": built.manifest["kind"],
            "warnings": warnings,
        }
    )
    return record


def evaluate_dataset(
    ds: RetrievalDataset,
    encoder: Encoder,
    *,
    index_spec: IndexSpec,
    metrics: list[str],
    top_k: int,
    ignore_identical_ids: bool,
    run_path: Path,
    cache_dir: Path | None,
    shard_size: int | None = None,
    index_dir: Path,
    per_query_path: Path | None = None,
    index_spec_name: str | None = None,
) -> dict[str, Any]:
    """Encode, index, search and score one loaded dataset; write its TREC run (and per-query scores
    to ``per_query_path``). Returns its record."""
    log.info("%s", ds.summary())
    seconds: dict[str, float] = {}
    truncated = log_truncated(encoder, ds.corpus_texts, ds.name)
    index = make_index(index_spec, encoder.dim, folder=index_dir)
    took = encode_into_index(
        index,
        ds.corpus_ids,
        ds.corpus_texts,
        encoder,
        cache_dir=cache_dir,
        label=f"{ds.name} documents",
        shard_size=shard_size,
        n_queries=len(ds.queries),  # PLAID-auto picks its backend for these searches (counted as index time)
        top_k=top_k,
    )
    seconds["encode_documents"], seconds["index"] = took.encode, took.index

    t = time.perf_counter()
    query_ids = list(ds.queries)
    query_emb = encoder.encode_queries([ds.queries[q] for q in query_ids], desc=f"encode {ds.name} queries")
    seconds["encode_queries"] = time.perf_counter() - t

    t = time.perf_counter()
    run = index.search(query_ids, query_emb, top_k, ignore_identical_ids=ignore_identical_ids)
    seconds["search"] = time.perf_counter() - t
    if index_spec.kind in ("plaid", "voyager"):  # on-disk indices: finish them with their manifest
        index.save(meta=_searchable_index_meta(ds, index, encoder, index_spec_name, seconds))

    ev = _score_and_write(ds, run, metrics, run_path, per_query_path, encoder.name.rstrip("/").split("/")[-1])
    return {
        "split": ds.split,
        "source": ds.source,
        "n_docs": ds.n_docs,
        "n_queries": ev.n_queries,
        "n_queries_without_results": ev.n_missing,
        "truncated_documents": truncated,
        "max_seq_length": getattr(encoder, "max_seq_length", None),
        "ignore_identical_ids": ignore_identical_ids,
        "top_k": top_k,
        "index": index_spec.kind,
        **({"index_backend": index.backend} if hasattr(index, "backend") else {}),  # PLAID: or exact MaxSim
        "ms_per_query": round(1000 * seconds["search"] / max(1, len(query_ids)), 3),
        "warnings": ds.warnings,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "metrics": ev.means,
    }


def _score_and_write(
    ds: RetrievalDataset, run: Run, metrics: list[str], run_path: Path, per_query_path: Path | None, tag: str
) -> Evaluation:
    """Score ``run``, write it as TREC and the per-query values as ``{metric: {query_id: value}}``."""
    ev = evaluate(ds.qrels, run, metrics)
    write_run(run_path, run, tag=f"mbert-retrieval_{tag}")
    if per_query_path is not None:
        write_json(per_query_path, ev.per_query)
    return ev


def _lexical_record(
    ds: RetrievalDataset, ev: Evaluation, top_k: int, ignore_identical_ids: bool, seconds: dict
) -> dict:
    return {
        "split": ds.split,
        "source": ds.source,
        "n_docs": ds.n_docs,
        "n_queries": ev.n_queries,
        "n_queries_without_results": ev.n_missing,
        "truncated_documents": 0,  # BM25 reads whole documents; fused runs keep their sources' records
        "max_seq_length": None,
        "ignore_identical_ids": ignore_identical_ids,
        "top_k": top_k,
        "ms_per_query": round(1000 * seconds.get("search", 0.0) / max(1, len(ds.queries)), 3),
        "warnings": ds.warnings,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "metrics": ev.means,
    }


def bm25_dataset_run(
    ds: RetrievalDataset, settings: BM25Config, *, top_k: int, ignore_identical_ids: bool, progress: bool
) -> tuple[Run, dict[str, float]]:
    """BM25 top ``top_k`` for one loaded dataset, and its wall time (index + search, seconds)."""
    from mbert_retrieval.retrieval.bm25 import bm25_search

    t = time.perf_counter()
    run = bm25_search(
        ds.corpus_ids,
        ds.corpus_texts,
        ds.queries,
        top_k,
        **settings.model_dump(),
        ignore_identical_ids=ignore_identical_ids,
        progress=progress,
    )
    return run, {"search": time.perf_counter() - t}


def evaluate_bm25_dataset(
    ds: RetrievalDataset,
    settings: BM25Config,
    *,
    metrics: list[str],
    top_k: int,
    ignore_identical_ids: bool,
    run_path: Path,
    per_query_path: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """BM25 on one loaded dataset: index, search, score, write its run and per-query scores."""
    log.info("%s", ds.summary())
    log.info("%s: BM25 reads whole documents (no truncation)", ds.name)
    run, seconds = bm25_dataset_run(
        ds, settings, top_k=top_k, ignore_identical_ids=ignore_identical_ids, progress=progress
    )
    ev = _score_and_write(ds, run, metrics, run_path, per_query_path, "bm25")
    return {**_lexical_record(ds, ev, top_k, ignore_identical_ids, seconds), "index": "bm25s"}


def _fusion_sources(fusion: FusionConfig, settings: BM25Config) -> list[dict[str, Any]]:
    """What each fused source is: BM25 settings, or the results folder's model and fingerprint."""
    from mbert_retrieval.retrieval.bm25 import describe as describe_bm25

    sources = []
    for source in fusion.sources:
        if source == "bm25":
            sources.append({"source": "bm25", **describe_bm25(**settings.model_dump())})
            continue
        folder = Path(source)
        results = read_results(folder / RESULTS_FILE)
        if results is None:
            raise DataError(folder / RESULTS_FILE, "not found: a fused source is 'bm25' or a results folder of eval")
        sources.append(
            {
                "source": str(folder),
                "model": results.get("model"),
                "fingerprint": results.get("encoder", {}).get("fingerprint"),
                "results": results,
            }
        )
    return sources


def _source_run(source: dict[str, Any], key: str, sub: str | None, split: str) -> Run:
    """The saved run of ``key`` (subset ``sub``) in a results folder, after checking it is the same split."""
    folder = Path(source["source"])
    record = source["results"].get("datasets", {}).get(key)
    if record is None or key not in source["results"].get("metrics", {}):
        raise DataError(folder / RESULTS_FILE, f"no finished run of dataset {key!r}; evaluate it there first")
    if record.get("split") != split:
        raise DataError(
            folder / RESULTS_FILE, f"dataset {key!r} was evaluated on split {record.get('split')!r}, not {split!r}"
        )
    path = folder / "runs" / (f"{key}/{sub}.trec" if sub else f"{key}.trec")
    return read_run(path)


def evaluate_fused_dataset(
    ds: RetrievalDataset,
    fusion: FusionConfig,
    sources: list[dict[str, Any]],
    settings: BM25Config,
    *,
    key: str,
    sub: str | None,
    metrics: list[str],
    top_k: int,
    ignore_identical_ids: bool,
    run_path: Path,
    per_query_path: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fuse the sources' runs of one loaded dataset (BM25 computed here), score, write."""
    from mbert_retrieval.retrieval.fusion import fuse

    log.info("%s", ds.summary())
    seconds: dict[str, float] = {}
    runs: list[Run] = []
    for source in sources:
        if source["source"] == "bm25":
            run, took = bm25_dataset_run(
                ds, settings, top_k=top_k, ignore_identical_ids=ignore_identical_ids, progress=progress
            )
            seconds["bm25"] = took["search"]
            runs.append(run)
        else:
            runs.append(_source_run(source, key, sub, ds.split))
    t = time.perf_counter()
    fused = fuse(
        runs, fusion.method, k=fusion.k, weights=fusion.weights, normalisation=fusion.normalisation, top_k=top_k
    )
    seconds["search"] = time.perf_counter() - t
    ev = _score_and_write(ds, fused, metrics, run_path, per_query_path, fusion.method)
    record = _lexical_record(ds, ev, top_k, ignore_identical_ids, seconds)
    record["truncated_documents"] = None
    record["index"] = f"fusion-{fusion.method}"
    return record


def _fingerprint(data: Any) -> str:
    return hashlib.blake2b(json.dumps(data, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


# ------------------------------------------------------------------------------------------------
# The retrievers: one per way of answering the queries, all writing the same files


def _encoder_summary(described: dict[str, Any]) -> str:
    return "encoder {}: dim {:d}, max_seq_length {}, {} on {} ({})".format(
        described["name"],
        described["dim"],
        described.get("max_seq_length"),
        described.get("attn_implementation"),
        described.get("device"),
        described.get("dtype"),
    )


def _lexical_summary(name: str, described: dict[str, Any]) -> str:
    return f"{name}: {json.dumps({k: v for k, v in described.items() if k != 'sources'})}"


class DatasetRetriever:
    """Our engine: a suite entry is evaluated one loaded dataset (one subset) at a time by
    :meth:`evaluate_loaded`; the entry's record is the dataset's, or the mean over its subsets."""

    def __init__(self, cfg: EvalConfig, *, progress: bool) -> None:
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.out)
        self.metrics = list(cfg.suite.metrics)

    def describe(self) -> Described:
        raise NotImplementedError

    def kind_settings(self) -> dict[str, Any]:
        """The settings of this kind of retriever a finished dataset must match (index, BM25, fusion...)."""
        raise NotImplementedError

    def settings(self, spec: DatasetSpec) -> dict[str, Any]:
        return {"document_length": spec.document_length, **self.kind_settings()}

    def prepare(self, spec: DatasetSpec, key: str) -> None:
        """Set up for one suite entry before its datasets load (e.g. the suite's document length)."""

    def evaluate_loaded(
        self, ds: RetrievalDataset, *, key: str, sub: str | None, run_name: str, **scoring: Any
    ) -> dict[str, Any]:
        """Search, score and write one loaded dataset; ``scoring``: metrics, top_k,
        ignore_identical_ids, run_path, per_query_path. Returns its record."""
        raise NotImplementedError

    def evaluate(self, spec: DatasetSpec, key: str, split: str) -> tuple[dict[str, Any], dict[str, float]]:
        self.prepare(spec, key)
        data_dir = Path(self.cfg.data_dir) if self.cfg.data_dir else self.out / "data"
        records: dict[str, dict[str, Any]] = {}
        for ds in iter_datasets(spec, data_dir=data_dir, split=split, download=self.cfg.download):
            sub = ds.name.split("/", 1)[1] if "/" in ds.name else None
            run_name = f"{key}/{sub}" if sub else key
            records[sub or key] = self.evaluate_loaded(
                ds,
                key=key,
                sub=sub,
                run_name=run_name,
                metrics=self.metrics,
                top_k=self.cfg.top_k,
                ignore_identical_ids=spec.ignore_identical_ids,
                run_path=self.out / "runs" / f"{run_name}.trec",
                per_query_path=self.out / PER_QUERY_DIR / f"{run_name}.json",
            )
        record, means = combine_subsets(key, split, records, self.metrics, subsets=bool(spec.subsets))
        record["main_metric"] = spec.main_metric or self.cfg.suite.main_metric
        record["document_length"] = spec.document_length
        log.info("%s: %s", key, ", ".join(f"{m} {v:.4f}" for m, v in means.items()))
        return record, means

    def _resolved(self, index_file: IndexSpecFile | None) -> dict[str, Any]:
        """``config.resolved.yaml``: the config with the index spec used (None where no spec applies)."""
        return self.cfg.model_copy(update={"index": index_file}).model_dump(mode="json")


class EncoderRetriever(DatasetRetriever):
    """A model (dense or ColBERT) encoding each corpus into an index of ``index_file``'s spec."""

    def __init__(self, cfg: EvalConfig, encoder: Encoder, index_file: IndexSpecFile, *, progress: bool) -> None:
        super().__init__(cfg, progress=progress)
        self.encoder = encoder
        self.index_file = index_file
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None

    def describe(self) -> Described:
        assert self.cfg.encoder is not None
        described = self.encoder.describe()
        return Described(
            model=self.cfg.encoder.model,
            encoder=described,
            index={"name": self.index_file.name, **self.index_file.index.model_dump()},
            config=self._resolved(self.index_file),
            summary=_encoder_summary(described),
        )

    def kind_settings(self) -> dict[str, Any]:
        return {"index": self.index_file.index.model_dump()}

    def prepare(self, spec: DatasetSpec, key: str) -> None:
        """The suite's document length: ColBERT's (unless ``--document-length`` gave one); dense keeps its own."""
        if spec.document_length is None:
            return
        assert self.cfg.encoder is not None
        set_length = getattr(self.encoder, "set_document_length", None)
        if self.cfg.encoder.document_length is None and set_length is not None:
            set_length(spec.document_length)
        elif set_length is None and getattr(self.encoder, "max_seq_length", None) != spec.document_length:
            log.info(
                "%s: the suite's document length %d applies to ColBERT; this dense model reads %s tokens "
                "(--max-seq-length changes it)",
                key,
                spec.document_length,
                getattr(self.encoder, "max_seq_length", None),
            )

    def evaluate_loaded(
        self, ds: RetrievalDataset, *, key: str, sub: str | None, run_name: str, **scoring: Any
    ) -> dict[str, Any]:
        return evaluate_dataset(
            ds,
            self.encoder,
            index_spec=self.index_file.index,
            index_dir=self.out / "indices" / run_name,
            index_spec_name=self.index_file.name,
            cache_dir=self.cache_dir,
            shard_size=self.cfg.shard_size,
            **scoring,
        )

    def encode_rank_shards(self, spec: DatasetSpec, key: str, split: str, *, rank: int, world_size: int) -> None:
        """``torchrun``: encode this rank's shards of each corpus of ``spec`` into the cache (the
        documents of every shard ``s`` with ``s % world_size == rank``); rank 0 evaluates from the cache."""
        assert self.cache_dir is not None
        self.prepare(spec, key)
        data_dir = Path(self.cfg.data_dir) if self.cfg.data_dir else self.out / "data"
        # with --download rank 0 fetched it already: the others find the folder (BEIR) or the hub cache
        for ds in iter_datasets(spec, data_dir=data_dir, split=split, download=self.cfg.download):
            mine = encode_rank_shards(
                ds.corpus_ids,
                ds.corpus_texts,
                self.encoder,
                cache_dir=self.cache_dir,
                label=f"{ds.name} documents",
                rank=rank,
                world_size=world_size,
                shard_size=self.cfg.shard_size,
            )
            log.info("%s: rank %d/%d holds shards %s", ds.name, rank, world_size, mine)


class BuiltIndexRetriever(DatasetRetriever):
    """A built index (``--index-dir``, a ``SearchIndex``) searched with its recorded encoder."""

    def __init__(self, cfg: EvalConfig, built: Any, *, progress: bool) -> None:
        super().__init__(cfg, progress=progress)
        self.built = built
        self.facts = _built_index_facts(built)

    def describe(self) -> Described:
        described = self.built.encoder.describe()
        return Described(
            model=described["name"],
            encoder=described,
            index=self.facts,
            config=self._resolved(None),
            summary=_encoder_summary(described),
        )

    def kind_settings(self) -> dict[str, Any]:
        return {"index_dir": self.facts}

    def prepare(self, spec: DatasetSpec, key: str) -> None:
        if spec.document_length is not None:
            log.info("%s: the suite's document length does not apply to a built index (its own is used)", key)

    def evaluate_loaded(
        self, ds: RetrievalDataset, *, key: str, sub: str | None, run_name: str, **scoring: Any
    ) -> dict[str, Any]:
        return evaluate_built_index(ds, self.built, **scoring)


class BM25Retriever(DatasetRetriever):
    """BM25 (bm25s) over each corpus: no neural encoder."""

    def describe(self) -> Described:
        from mbert_retrieval.retrieval.bm25 import describe as describe_bm25

        described = describe_bm25(**self.cfg.bm25.model_dump())
        return Described(
            model="bm25",
            encoder=described,
            index={"name": "bm25"},
            config=self._resolved(None),
            summary=_lexical_summary("bm25", described),
        )

    def kind_settings(self) -> dict[str, Any]:
        return {"bm25": self.cfg.bm25.model_dump()}

    def evaluate_loaded(
        self, ds: RetrievalDataset, *, key: str, sub: str | None, run_name: str, **scoring: Any
    ) -> dict[str, Any]:
        return evaluate_bm25_dataset(ds, self.cfg.bm25, progress=self.progress, **scoring)


class FusionRetriever(DatasetRetriever):
    """The runs of earlier result folders (and BM25, computed here) fused per dataset (``cfg.fusion``)."""

    def __init__(self, cfg: EvalConfig, *, progress: bool) -> None:
        super().__init__(cfg, progress=progress)
        assert cfg.fusion is not None
        self.fusion = cfg.fusion
        self.sources = _fusion_sources(cfg.fusion, cfg.bm25)
        public = [{k: v for k, v in s.items() if k != "results"} for s in self.sources]
        self.described: dict[str, Any] = {
            "name": f"{cfg.fusion.method}({', '.join(Path(s['source']).name for s in self.sources)})",
            "kind": "fusion",
            **cfg.fusion.model_dump(),
            "sources": public,
        }
        self.described["fingerprint"] = "fusion-" + _fingerprint({**cfg.fusion.model_dump(), "sources": public})

    def describe(self) -> Described:
        return Described(
            model=self.described["name"],
            encoder=self.described,
            index={"name": "fusion"},
            config=self._resolved(None),
            summary=_lexical_summary("fusion", self.described),
        )

    def kind_settings(self) -> dict[str, Any]:
        return {"fusion": self.described["fingerprint"]}

    def evaluate_loaded(
        self, ds: RetrievalDataset, *, key: str, sub: str | None, run_name: str, **scoring: Any
    ) -> dict[str, Any]:
        return evaluate_fused_dataset(
            ds, self.fusion, self.sources, self.cfg.bm25, key=key, sub=sub, progress=self.progress, **scoring
        )


__all__ = [
    "BM25Retriever",
    "BuiltIndexRetriever",
    "DatasetRetriever",
    "EncoderRetriever",
    "FusionRetriever",
    "bm25_dataset_run",
    "evaluate_bm25_dataset",
    "evaluate_built_index",
    "evaluate_dataset",
    "evaluate_fused_dataset",
    "open_built_index",
]
