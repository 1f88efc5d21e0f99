"""The eval flow: suite datasets -> encoder -> index -> run -> metrics -> results files.

The one module that joins encoders, indexes, datasets and metrics. Per dataset: encode the corpus
(through the shard cache, so a killed run resumes), add it to the index of the spec (exact FAISS for
dense models and PLAID for ColBERT by default), encode the queries, search the top ``k``, score,
and write ``runs/<dataset>.trec`` and ``results.json``
(atomically, after each dataset: a run stopped half-way keeps what it finished).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .cache import iter_document_embeddings
from .catalog import load_index_spec
from .config import DatasetSpec, EvalConfig, IndexSpec, IndexSpecFile
from .data import iter_datasets
from .encoders import Encoder, encoder_from_config
from .errors import DataError, OutputExistsError
from .indexes import check_compatible, make_index
from .io import write_json, write_text
from .metrics import evaluate
from .report import markdown_table
from .runs import write_run
from .types import RetrievalDataset
from .versions import versions

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.resolved.yaml"


def result_key(spec: DatasetSpec, split: str) -> str:
    """``scifact`` on the suite's split, ``scifact.train`` on another."""
    return spec.name if split == spec.split else f"{spec.name}.{split}"


def default_index(encoder_kind: str) -> IndexSpecFile:
    """faiss-flat (exact) for single-vector encoders, PLAID for ColBERT."""
    return load_index_spec("plaid" if encoder_kind == "colbert" else "faiss-flat")


def _read_results(path: Path) -> dict[str, Any] | None:
    import json

    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg}); move it away or pass --overwrite", line=e.lineno) from None
    if not isinstance(data, dict) or "metrics" not in data or "encoder" not in data:
        raise DataError(path, "not a results file of this tool; move it away or pass --overwrite")
    return data


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
) -> dict[str, Any]:
    """Encode, index, search and score one loaded dataset; write its TREC run. Returns its record."""
    log.info("%s", ds.summary())
    multi = encoder.kind == "colbert"
    seconds: dict[str, float] = {"encode_documents": 0.0, "index": 0.0}
    truncated = None
    count_truncated = getattr(encoder, "count_truncated", None)
    if count_truncated is not None:
        truncated = count_truncated(ds.corpus_texts)
        limit = getattr(encoder, "max_seq_length", None)
        if truncated:
            log.warning(
                "%s: %d of %d documents exceed %s tokens and are truncated", ds.name, truncated, ds.n_docs, limit
            )
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
        index.save(meta={"encoder": encoder.describe(), "versions": versions()})

    ev = evaluate(ds.qrels, run, metrics)
    write_run(run_path, run, tag=f"mbert-retrieval_{encoder.name.rstrip('/').split('/')[-1]}")
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


def run_eval(
    cfg: EvalConfig,
    *,
    encoder: Encoder | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``cfg.encoder`` on ``cfg.datasets`` of ``cfg.suite``; write and return the results.

    Re-running into the same ``--out`` with the same encoder skips datasets already finished with
    the same settings (resume); a different encoder there is refused unless ``overwrite``.
    """
    out = Path(cfg.out)
    results_path = out / RESULTS_FILE
    existing = None if overwrite else _read_results(results_path)
    specs = [cfg.suite.dataset(name) for name in cfg.datasets]  # unknown names fail before any work
    encoder = encoder or encoder_from_config(cfg.encoder, progress=progress)
    index_file = cfg.index or default_index(encoder.kind)
    check_compatible(index_file.index, encoder.kind)
    described = encoder.describe()
    if existing is not None and existing["encoder"].get("fingerprint") != described["fingerprint"]:
        raise OutputExistsError(
            f"{results_path} holds results of another model or encoder setting "
            f"({existing['encoder'].get('name')}); choose another --out or pass --overwrite"
        )
    log.info(
        "encoder %s: dim %d, max_seq_length %s, %s on %s (%s)",
        described["name"],
        described["dim"],
        described.get("max_seq_length"),
        described.get("attn_implementation"),
        described.get("device"),
        described.get("dtype"),
    )
    results: dict[str, Any] = existing or {}
    results.update(
        {
            "suite": cfg.suite.name,
            "model": cfg.encoder.model,
            "encoder": described,
            "index": {"name": index_file.name, **index_file.index.model_dump()},
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

    for spec in specs:
        split = cfg.split or spec.split
        key = result_key(spec, split)
        settings = {
            "top_k": cfg.top_k,
            "metrics": list(cfg.suite.metrics),
            "split": split,
            "index": index_file.index.model_dump(),
            "document_length": spec.document_length,
        }
        done = results["datasets"].get(key)
        if done is not None and done.get("settings") == settings and key in results["metrics"]:
            log.info("%s: already in %s, skipped (pass --overwrite to recompute)", key, results_path)
            continue
        records: dict[str, dict[str, Any]] = {}
        if spec.document_length is not None and cfg.encoder.document_length is None:
            set_length = getattr(encoder, "set_document_length", None)
            if set_length is not None:
                set_length(spec.document_length)
        for ds in iter_datasets(spec, data_dir=data_dir, split=split, download=cfg.download):
            sub = ds.name.split("/", 1)[1] if "/" in ds.name else None
            run_name = f"{key}/{sub}" if sub else key
            records[sub or key] = evaluate_dataset(
                ds,
                encoder,
                index_spec=index_file.index,
                index_dir=out / "indices" / run_name,
                metrics=list(cfg.suite.metrics),
                top_k=cfg.top_k,
                ignore_identical_ids=spec.ignore_identical_ids,
                run_path=out / "runs" / f"{run_name}.trec",
                cache_dir=cache_dir,
            )
        if spec.subsets:
            means = {m: math.fsum(r["metrics"][m] for r in records.values()) / len(records) for m in cfg.suite.metrics}
            record = {
                "split": split,
                "n_docs": sum(r["n_docs"] for r in records.values()),
                "n_queries": sum(r["n_queries"] for r in records.values()),
                "aggregate": f"mean over {len(records)} subsets",
                "subsets": records,
                "run": f"runs/{key}/",
            }
        else:
            record = records[key]
            means = record.pop("metrics")
            record["run"] = f"runs/{key}.trec"
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
