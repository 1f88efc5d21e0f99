"""One interface for every way ``eval`` answers a suite's queries, and the one loop that runs it.

The "what" (``results.json``, written by :mod:`mbert_retrieval.results.store`) apart from the "how": a
:class:`Retriever` is an encoder with an index, BM25, a fusion of earlier runs, a built index
(:mod:`mbert_retrieval.retrieval.retrievers`, our engine) or MTEB's evaluator
(:mod:`mbert_retrieval.retrieval.mteb`). :func:`run_suite` asks it what to record, skips the datasets a
folder already holds with the same settings, has it evaluate the others and writes each one as it
finishes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mbert_retrieval.core.versions import versions
from mbert_retrieval.results.store import OUR_ENGINE, ResultsStore, result_key

if TYPE_CHECKING:
    from mbert_retrieval.config import DatasetSpec, EvalConfig

log = logging.getLogger(__name__)


@dataclass
class Described:
    """What ``results.json`` records of a retriever (``model``, ``encoder`` with its ``fingerprint``,
    ``index``, ``versions``; ``engine`` unless ours), what ``config.resolved.yaml`` holds, and the line
    logged once the folder is known to be ours to write (None: nothing)."""

    model: str
    encoder: dict[str, Any]
    index: dict[str, Any]
    config: dict[str, Any]
    engine: str = OUR_ENGINE
    versions: dict[str, str] = field(default_factory=versions)
    summary: str | None = None

    def header(self, suite: Any) -> dict[str, Any]:
        """The top of ``results.json``, in its order (``engine`` only when not ours)."""
        return {
            "suite": suite.name,
            "model": self.model,
            **({"engine": self.engine} if self.engine != OUR_ENGINE else {}),
            "encoder": self.encoder,
            "index": self.index,
            "main_metric": suite.main_metric,
            "metric_names": list(suite.metrics),
            "versions": self.versions,
        }


class Retriever(Protocol):
    """One way of answering a suite's queries, chosen once from the ``EvalConfig``."""

    def describe(self) -> Described:
        """What ``results.json`` records of this retriever."""
        ...

    def settings(self, spec: DatasetSpec) -> dict[str, Any]:
        """What a finished dataset must have been run with to be skipped, beyond top-k, metrics and split."""
        ...

    def evaluate(self, spec: DatasetSpec, key: str, split: str) -> tuple[dict[str, Any], dict[str, float]]:
        """Evaluate one suite entry (each of its subsets), writing its runs and per-query files;
        return its ``datasets`` record and its means."""
        ...


def dataset_settings(retriever: Retriever, cfg: EvalConfig, spec: DatasetSpec, split: str) -> dict[str, Any]:
    """What a finished dataset must have been run with for ``run_suite`` to skip it (resume)."""
    return {"top_k": cfg.top_k, "metrics": list(cfg.suite.metrics), "split": split, **retriever.settings(spec)}


def run_suite(retriever: Retriever, store: ResultsStore, cfg: EvalConfig, specs: list[DatasetSpec]) -> dict[str, Any]:
    """Evaluate ``specs`` with ``retriever`` into ``store``: refuse a folder of another encoder setting
    or engine, write the header and ``config.resolved.yaml``, then each dataset not finished there with
    the same settings (``results.json`` rewritten after each), and at the end ``results.md``."""
    described = retriever.describe()
    store.refuse_other_writer(described.encoder["fingerprint"], described.engine)
    if described.summary is not None:
        log.info("%s", described.summary)
    store.begin(described.header(cfg.suite), described.config)
    for spec in specs:
        split = cfg.split or spec.split
        key = result_key(spec, split)
        settings = dataset_settings(retriever, cfg, spec, split)
        if store.finished(key, settings):
            continue
        record, means = retriever.evaluate(spec, key, split)
        store.save(key, record, means, settings)
    return store.close()


__all__ = ["Described", "Retriever", "dataset_settings", "run_suite"]
