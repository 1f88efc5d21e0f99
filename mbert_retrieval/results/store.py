"""The results folder of ``eval``: ``results.json`` (its schema), ``results.md`` and ``config.resolved.yaml``.

One reader and one writer for both eval engines (ours and MTEB's): :func:`read_results` checks a
``results.json`` is one of ours; :class:`ResultsStore` refuses a folder written by another encoder
setting or engine, writes the header and the resolved config, tells which datasets are finished
(resume), turns a dataset's records into its entry (the mean over subsets for CQADupStack-style
entries) and rewrites ``results.json`` atomically after each dataset, then ``results.md`` at the end.

``results.json``::

    {"suite", "model", ["engine",] "encoder", "index", "main_metric", "metric_names", "versions", "config",
     "metrics": {key: {metric: mean}},
     "datasets": {key: {...record, "run", "per_query", "settings", "finished"}}}

``engine`` is absent for our engine (``"ours"`` when read) and ``"mteb"`` for ``eval --engine mteb``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mbert_retrieval.core.errors import DataError, OutputExistsError
from mbert_retrieval.core.io import check_folder_target, removed_on_failure, write_json, write_text
from mbert_retrieval.core.lock import output_lock_if_main
from mbert_retrieval.results.tables import markdown_table

if TYPE_CHECKING:
    from mbert_retrieval.config import DatasetSpec

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.resolved.yaml"
PER_QUERY_DIR = "per_query"
OUR_ENGINE = "ours"


def result_key(spec: DatasetSpec, split: str) -> str:
    """``scifact`` on the suite's split, ``scifact.train`` on another."""
    return spec.name if split == spec.split else f"{spec.name}.{split}"


def read_results(path: Path) -> dict[str, Any] | None:
    """The ``results.json`` at ``path``, or None when there is none; a file that is not one of ours is refused."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg}); move it away or pass --overwrite", line=e.lineno) from None
    if not isinstance(data, dict) or "metrics" not in data or "encoder" not in data:
        raise DataError(path, "not a results file of this tool; move it away or pass --overwrite")
    return data


@contextlib.contextmanager
def writing_results(out: str | Path) -> Iterator[Path]:
    """The output lock of ``out`` (one writer per folder; see ``lock``), held for a whole eval run.

    A run that fails before its first dataset is finished leaves no ``config.resolved.yaml`` behind
    (embedding shards stay in the cache, for the next run)."""
    folder = check_folder_target(out)
    with output_lock_if_main(out), removed_on_failure(folder / CONFIG_FILE, unless=folder / RESULTS_FILE):
        yield folder


def combine_subsets(
    key: str, split: str, records: dict[str, dict[str, Any]], metrics: list[str], *, subsets: bool
) -> tuple[dict[str, Any], dict[str, float]]:
    """A dataset's entry in ``datasets`` and its means in ``metrics``: a suite entry with subsets
    (CQADupStack's forums) is the plain mean over its subsets, each subset's record kept under
    ``subsets``; one without is its own record, the means moved out of it."""
    if subsets:
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
        return record, means
    record = records[key]
    means = record.pop("metrics")
    record["run"] = f"runs/{key}.trec"
    record["per_query"] = f"{PER_QUERY_DIR}/{key}.json"
    return record, means


class ResultsStore:
    """``OUT/results.json`` while an eval writes it: what was there (unless ``overwrite``), and the
    results being written (the finished datasets of an earlier run kept, for resume)."""

    def __init__(self, out: str | Path, *, overwrite: bool) -> None:
        self.out = Path(out)
        self.path = self.out / RESULTS_FILE
        self.existing = None if overwrite else read_results(self.path)
        self.results: dict[str, Any] = self.existing or {}

    def refuse_other_writer(self, fingerprint: str, engine: str) -> None:
        """Refuse a folder holding results of another encoder setting or of the other engine."""
        if self.existing is None:
            return
        if self.existing["encoder"].get("fingerprint") != fingerprint:
            raise OutputExistsError(
                f"{self.path} holds results of another model or encoder setting "
                f"({self.existing['encoder'].get('name')}); choose another --out or pass --overwrite"
            )
        if (found := self.existing.get("engine", OUR_ENGINE)) != engine:
            raise OutputExistsError(
                f"{self.path} holds results of engine {found!r}, not {engine}; choose another --out or pass --overwrite"
            )

    def begin(self, header: dict[str, Any], resolved_config: dict[str, Any]) -> None:
        """Write the header fields (``suite`` ... ``config``) over an earlier run's, and ``config.resolved.yaml``."""
        self.results.update({**header, "config": CONFIG_FILE})
        self.results.setdefault("metrics", {})
        self.results.setdefault("datasets", {})
        self.out.mkdir(parents=True, exist_ok=True)
        write_text(self.out / CONFIG_FILE, yaml.safe_dump(resolved_config, sort_keys=False, allow_unicode=True))

    def finished(self, key: str, settings: dict[str, Any]) -> bool:
        """Whether ``key`` was finished here with the same ``settings`` (then it is skipped: resume)."""
        done = self.results["datasets"].get(key)
        if done is not None and done.get("settings") == settings and key in self.results["metrics"]:
            log.info("%s: already in %s, skipped (pass --overwrite to recompute)", key, self.path)
            return True
        return False

    def save(self, key: str, record: dict[str, Any], means: dict[str, float], settings: dict[str, Any]) -> None:
        """Record one finished dataset and rewrite ``results.json`` (a stopped run keeps what it finished)."""
        record["settings"] = settings
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results["metrics"][key] = means
        self.results["datasets"][key] = record
        write_json(self.path, self.results)

    def close(self) -> dict[str, Any]:
        """Write ``results.md`` (the Markdown table) and the final ``results.json``; return the results."""
        write_text(self.out / "results.md", markdown_table(self.results) + "\n")
        write_json(self.path, self.results)
        return self.results


__all__ = [
    "CONFIG_FILE",
    "PER_QUERY_DIR",
    "RESULTS_FILE",
    "ResultsStore",
    "combine_subsets",
    "read_results",
    "result_key",
    "writing_results",
]
