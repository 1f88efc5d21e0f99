"""Retrieval metrics with trec_eval / pytrec_eval semantics, named as ir-measures names them.

Supported measures (``k`` a positive integer): ``nDCG@k`` (trec_eval ``ndcg_cut_k``: linear gain
= relevance level, log2 discount, ideal ranking from all judged documents), ``R@k``
(``recall_k``), ``P@k`` (``P_k``), ``RR@k`` (reciprocal rank of the first relevant document in
the top k), ``AP@k`` / ``MAP@k`` (``map_cut_k``: divided by the number of relevant documents).

Semantics shared with trec_eval, and tested against pytrec_eval:
- the run is ranked by score descending, ties broken by document id descending (string order);
- a document is relevant when its judgement is >= 1 (``relevance_level`` 1);
- only queries present in both the qrels and the run are scored (a query in the run with an
  empty result list scores 0), and the mean is over those: pytrec_eval, BEIR and MTEB all average
  this way. ``evaluate`` reports how many qrels queries were absent from the run, so that a
  short run cannot hide. (ir_measures' aggregate instead counts absent queries as 0.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.types import Qrels, Run

_MEASURE = re.compile(r"^(nDCG|R|P|RR|AP|MAP)@([1-9][0-9]*)$")
_ALIASES = {"MAP": "AP"}


@dataclass(frozen=True)
class Measure:
    """A parsed measure name such as ``nDCG@10``."""

    name: str
    cutoff: int

    def __str__(self) -> str:
        return f"{self.name}@{self.cutoff}"


def parse_measure(text: str) -> Measure:
    """Parse an ir-measures style name; ``MAP@k`` is accepted as an alias of ``AP@k``."""
    m = _MEASURE.match(text.strip())
    if not m:
        raise ConfigError(
            f"unknown measure {text!r}: expected one of nDCG@k, R@k, P@k, RR@k, AP@k (or MAP@k), k a positive integer"
        )
    name = _ALIASES.get(m.group(1), m.group(1))
    return Measure(name, int(m.group(2)))


def rank(results: dict[str, float]) -> list[str]:
    """Document ids in trec_eval order: score descending, then document id descending."""
    return [doc for doc, _ in sorted(results.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def _query_values(ranking: list[str], judged: dict[str, int], measures: list[Measure]) -> dict[Measure, float]:
    relevant = {doc for doc, rel in judged.items() if rel >= 1}
    n_rel = len(relevant)
    out: dict[Measure, float] = {}
    for m in measures:
        top = ranking[: m.cutoff]
        if m.name == "nDCG":
            dcg = sum(judged.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(top) if judged.get(doc, 0) > 0)
            ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[: m.cutoff]
            idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
            out[m] = dcg / idcg if idcg > 0 else 0.0
        elif m.name == "R":
            out[m] = sum(1 for doc in top if doc in relevant) / n_rel if n_rel else 0.0
        elif m.name == "P":
            out[m] = sum(1 for doc in top if doc in relevant) / m.cutoff
        elif m.name == "RR":
            out[m] = next((1.0 / (i + 1) for i, doc in enumerate(top) if doc in relevant), 0.0)
        elif m.name == "AP":
            hits, total = 0, 0.0
            for i, doc in enumerate(top):
                if doc in relevant:
                    hits += 1
                    total += hits / (i + 1)
            out[m] = total / n_rel if n_rel else 0.0
        else:  # pragma: no cover - parse_measure admits nothing else
            raise AssertionError(m)
    return out


@dataclass(frozen=True)
class Evaluation:
    """Per-query values and means of one run against one qrels."""

    per_query: dict[str, dict[str, float]]  # measure name -> query id -> value
    means: dict[str, float]  # measure name -> mean over scored queries
    n_queries: int  # queries scored (in both qrels and run)
    n_missing: int  # queries in the qrels absent from the run (not scored, as pytrec_eval)


def evaluate(qrels: Qrels, run: Run, measures: Iterable[str | Measure]) -> Evaluation:
    """Score ``run`` against ``qrels``; see the module docstring for the exact semantics."""
    # results are keyed by the names as given ("MAP@100" stays "MAP@100"), values by the measure
    given = [str(m) for m in measures]
    parsed = [m if isinstance(m, Measure) else parse_measure(m) for m in measures]
    names = dict(zip(parsed, given, strict=True))
    per_query: dict[str, dict[str, float]] = {names[m]: {} for m in parsed}
    scored = [qid for qid in qrels if qid in run]
    for qid in scored:
        values = _query_values(rank(run[qid]), qrels[qid], list(names))
        for m, v in values.items():
            per_query[names[m]][qid] = v
    means = {name: (math.fsum(values.values()) / len(values) if values else 0.0) for name, values in per_query.items()}
    return Evaluation(per_query=per_query, means=means, n_queries=len(scored), n_missing=len(qrels) - len(scored))
