"""The eval flow: suite datasets -> encoder (or BM25, or a fusion of runs) -> run -> metrics -> results files.

The one module that joins encoders, indexes, datasets and metrics. Per dataset: encode the corpus
(through the shard cache, so a killed run resumes), add it to the index of the spec (exact FAISS for
dense models and PLAID for ColBERT by default), encode the queries, search the top ``k``, score,
and write ``runs/<dataset>.trec``, ``per_query/<dataset>.json`` and ``results.json``
(atomically, after each dataset: a run stopped half-way keeps what it finished).

The model ``bm25`` runs bm25s instead of an encoder (``bm25.py``); ``EvalConfig.fusion`` fuses the
runs of earlier result folders (and BM25 computed on the fly) with ``fusion.py``. Both write the
same files as a model does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mbert_retrieval.catalog import load_index_spec
from mbert_retrieval.config import BM25Config, DatasetSpec, EvalConfig, FusionConfig, IndexSpec, IndexSpecFile
from mbert_retrieval.core.errors import ConfigError, DataError, OutputExistsError
from mbert_retrieval.core.io import check_folder_target, removed_on_failure, write_json, write_text
from mbert_retrieval.core.lock import output_lock_if_main
from mbert_retrieval.core.types import RetrievalDataset, Run
from mbert_retrieval.core.versions import versions
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.encoders import Encoder, encoder_from_config, log_truncated
from mbert_retrieval.encoders.cache import iter_document_embeddings
from mbert_retrieval.indexes import check_compatible, make_index
from mbert_retrieval.results.metrics import Evaluation, evaluate
from mbert_retrieval.results.runs import read_run, write_run
from mbert_retrieval.results.tables import markdown_table

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.resolved.yaml"
PER_QUERY_DIR = "per_query"


def result_key(spec: DatasetSpec, split: str) -> str:
    """``scifact`` on the suite's split, ``scifact.train`` on another."""
    return spec.name if split == spec.split else f"{spec.name}.{split}"


def default_index(encoder_kind: str) -> IndexSpecFile:
    """faiss-flat (exact) for single-vector encoders, PLAID for ColBERT."""
    return load_index_spec("plaid" if encoder_kind == "colbert" else "faiss-flat")


def _read_results(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg}); move it away or pass --overwrite", line=e.lineno) from None
    if not isinstance(data, dict) or "metrics" not in data or "encoder" not in data:
        raise DataError(path, "not a results file of this tool; move it away or pass --overwrite")
    return data


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
def _open_built_index(cfg: EvalConfig, specs: list[Any], *, progress: bool) -> Iterator[Any]:
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
    index_dir: Path,
    per_query_path: Path | None = None,
    index_spec_name: str | None = None,
) -> dict[str, Any]:
    """Encode, index, search and score one loaded dataset; write its TREC run (and per-query scores
    to ``per_query_path``). Returns its record."""
    log.info("%s", ds.summary())
    multi = encoder.kind == "colbert"
    seconds: dict[str, float] = {"encode_documents": 0.0, "index": 0.0}
    truncated = log_truncated(encoder, ds.corpus_texts, ds.name)
    index = make_index(index_spec, encoder.dim, folder=index_dir)
    t = time.perf_counter()
    for rows, emb in iter_document_embeddings(
        ds.corpus_ids,
        ds.corpus_texts,
        encoder.encode_documents,
        encoder_fingerprint=encoder.fingerprint(),
        dim=encoder.dim,
        cache_dir=cache_dir,
        multi=multi,
        label=f"{ds.name} documents",
    ):
        t_add = time.perf_counter()
        index.add(ds.corpus_ids[rows], emb)
        seconds["index"] += time.perf_counter() - t_add
    seconds["encode_documents"] = time.perf_counter() - t - seconds["index"]

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
        results = _read_results(folder / RESULTS_FILE)
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


def run_eval(
    cfg: EvalConfig,
    *,
    encoder: Encoder | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """``_run_eval`` holding the output lock of ``cfg.out`` (one writer per folder; see ``lock``).

    A run that fails before its first dataset is finished leaves no ``config.resolved.yaml`` behind
    (embedding shards stay in the cache, for the next run)."""
    out = check_folder_target(cfg.out)
    with (
        output_lock_if_main(cfg.out),
        removed_on_failure(out / CONFIG_FILE, unless=out / RESULTS_FILE),
        contextlib.ExitStack() as stack,  # holds a built index (--index-dir) open for the run
    ):
        return _run_eval(cfg, stack, encoder=encoder, overwrite=overwrite, progress=progress)


def _run_eval(
    cfg: EvalConfig, stack: contextlib.ExitStack, *, encoder: Encoder | None, overwrite: bool, progress: bool
) -> dict[str, Any]:
    """Evaluate ``cfg.encoder`` (a model, or ``bm25``) or ``cfg.fusion`` on ``cfg.datasets`` of
    ``cfg.suite``; write and return the results.

    Re-running into the same ``--out`` with the same encoder skips datasets already finished with
    the same settings (resume); a different encoder there is refused unless ``overwrite``.
    """
    out = Path(cfg.out)
    results_path = out / RESULTS_FILE
    existing = None if overwrite else _read_results(results_path)
    specs = [cfg.suite.dataset(name) for name in cfg.datasets]  # unknown names fail before any work
    index_file: IndexSpecFile | None = None
    built: Any = None
    built_facts: dict[str, Any] | None = None
    sources: list[dict[str, Any]] = []
    if cfg.fusion is not None:
        mode = "fusion"
        sources = _fusion_sources(cfg.fusion, cfg.bm25)
        public = [{k: v for k, v in s.items() if k != "results"} for s in sources]
        described = {
            "name": f"{cfg.fusion.method}({', '.join(Path(s['source']).name for s in sources)})",
            "kind": "fusion",
            **cfg.fusion.model_dump(),
            "sources": public,
        }
        described["fingerprint"] = "fusion-" + _fingerprint({**cfg.fusion.model_dump(), "sources": public})
        model_name = described["name"]
    elif cfg.index_dir is not None:
        mode = "index-dir"
        built = stack.enter_context(_open_built_index(cfg, specs, progress=progress))
        built_facts = _built_index_facts(built)
        encoder = built.encoder
        described = encoder.describe()
        model_name = described["name"]
    elif cfg.is_bm25:
        from mbert_retrieval.retrieval.bm25 import describe as describe_bm25

        mode = "bm25"
        described = describe_bm25(**cfg.bm25.model_dump())
        model_name = "bm25"
    else:
        assert cfg.encoder is not None
        mode = "encoder"
        encoder = encoder or encoder_from_config(cfg.encoder, progress=progress)
        index_file = cfg.index or default_index(encoder.kind)
        check_compatible(index_file.index, encoder.kind)
        described = encoder.describe()
        model_name = cfg.encoder.model
    if existing is not None and existing["encoder"].get("fingerprint") != described["fingerprint"]:
        raise OutputExistsError(
            f"{results_path} holds results of another model or encoder setting "
            f"({existing['encoder'].get('name')}); choose another --out or pass --overwrite"
        )
    if existing is not None and existing.get("engine", "ours") != "ours":  # written by `eval --engine mteb`
        raise OutputExistsError(
            f"{results_path} holds results of engine {existing['engine']!r}, not ours; "
            "choose another --out or pass --overwrite"
        )
    if mode in ("encoder", "index-dir"):
        log.info(
            "encoder %s: dim %d, max_seq_length %s, %s on %s (%s)",
            described["name"],
            described["dim"],
            described.get("max_seq_length"),
            described.get("attn_implementation"),
            described.get("device"),
            described.get("dtype"),
        )
    else:
        log.info("%s: %s", mode, json.dumps({k: v for k, v in described.items() if k != "sources"}))
    results: dict[str, Any] = existing or {}
    results.update(
        {
            "suite": cfg.suite.name,
            "model": model_name,
            "encoder": described,
            "index": {"name": index_file.name, **index_file.index.model_dump()}
            if index_file
            else built_facts or {"name": mode},
            "main_metric": cfg.suite.main_metric,
            "metric_names": list(cfg.suite.metrics),
            "versions": versions(),
            "config": CONFIG_FILE,
        }
    )
    results.setdefault("metrics", {})
    results.setdefault("datasets", {})
    out.mkdir(parents=True, exist_ok=True)
    resolved = cfg.model_copy(update={"index": index_file})
    write_text(out / CONFIG_FILE, yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    data_dir = Path(cfg.data_dir) if cfg.data_dir else out / "data"
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    metrics = list(cfg.suite.metrics)

    for spec in specs:
        split = cfg.split or spec.split
        key = result_key(spec, split)
        settings: dict[str, Any] = {
            "top_k": cfg.top_k,
            "metrics": metrics,
            "split": split,
            "document_length": spec.document_length,
        }
        if mode == "encoder":
            assert index_file is not None
            settings["index"] = index_file.index.model_dump()
        elif mode == "index-dir":
            settings["index_dir"] = built_facts
        elif mode == "bm25":
            settings["bm25"] = cfg.bm25.model_dump()
        else:
            settings["fusion"] = described["fingerprint"]
        done = results["datasets"].get(key)
        if done is not None and done.get("settings") == settings and key in results["metrics"]:
            log.info("%s: already in %s, skipped (pass --overwrite to recompute)", key, results_path)
            continue
        records: dict[str, dict[str, Any]] = {}
        if mode == "index-dir" and spec.document_length is not None:
            log.info("%s: the suite's document length does not apply to a built index (its own is used)", key)
        if mode == "encoder" and spec.document_length is not None:
            assert cfg.encoder is not None and encoder is not None
            set_length = getattr(encoder, "set_document_length", None)
            if cfg.encoder.document_length is None and set_length is not None:
                set_length(spec.document_length)
            elif set_length is None and getattr(encoder, "max_seq_length", None) != spec.document_length:
                log.info(
                    "%s: the suite's document length %d applies to ColBERT; this dense model reads %s tokens "
                    "(--max-seq-length changes it)",
                    key,
                    spec.document_length,
                    getattr(encoder, "max_seq_length", None),
                )
        for ds in iter_datasets(spec, data_dir=data_dir, split=split, download=cfg.download):
            sub = ds.name.split("/", 1)[1] if "/" in ds.name else None
            run_name = f"{key}/{sub}" if sub else key
            common = {
                "metrics": metrics,
                "top_k": cfg.top_k,
                "ignore_identical_ids": spec.ignore_identical_ids,
                "run_path": out / "runs" / f"{run_name}.trec",
                "per_query_path": out / PER_QUERY_DIR / f"{run_name}.json",
            }
            if mode == "bm25":
                record = evaluate_bm25_dataset(ds, cfg.bm25, progress=progress, **common)
            elif mode == "index-dir":
                record = evaluate_built_index(ds, built, **common)
            elif mode == "fusion":
                assert cfg.fusion is not None
                record = evaluate_fused_dataset(
                    ds, cfg.fusion, sources, cfg.bm25, key=key, sub=sub, progress=progress, **common
                )
            else:
                assert encoder is not None and index_file is not None
                record = evaluate_dataset(
                    ds,
                    encoder,
                    index_spec=index_file.index,
                    index_dir=out / "indices" / run_name,
                    index_spec_name=index_file.name,
                    cache_dir=cache_dir,
                    **common,
                )
            records[sub or key] = record
        if spec.subsets:
            means = {m: math.fsum(r["metrics"][m] for r in records.values()) / len(records) for m in metrics}
            record = {
                "split": split,
                "n_docs": sum(r["n_docs"] for r in records.values()),
                "n_queries": sum(r["n_queries"] for r in records.values()),
                "aggregate": f"mean over {len(records)} subsets",
                "subsets": records,
                "run": f"runs/{key}/",
                "per_query": f"{PER_QUERY_DIR}/{key}/",
            }
        else:
            record = records[key]
            means = record.pop("metrics")
            record["run"] = f"runs/{key}.trec"
            record["per_query"] = f"{PER_QUERY_DIR}/{key}.json"
        record["main_metric"] = spec.main_metric or cfg.suite.main_metric
        record["document_length"] = spec.document_length
        record["settings"] = settings
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results["metrics"][key] = means
        results["datasets"][key] = record
        write_json(results_path, results)
        log.info("%s: %s", key, ", ".join(f"{m} {v:.4f}" for m, v in means.items()))

    table = markdown_table(results)
    write_text(out / "results.md", table + "\n")
    write_json(results_path, results)
    return results
