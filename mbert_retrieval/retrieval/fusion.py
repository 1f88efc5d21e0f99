"""Fusing runs: reciprocal rank fusion and weighted sums of normalised scores. Pure functions on runs.

A run is ``{query_id: {doc_id: score}}``. Ranks follow trec_eval order (score descending, ties by
document id descending: ``metrics.rank``), so a fused run is reproducible from the TREC files.

- ``rrf``: ``score(d) = sum_i w_i / (k + rank_i(d))`` over the runs that retrieved ``d`` (rank 1 =
  best; Cormack et al. 2009, ``k`` = 60). A document missing from a run gets nothing from it.
- ``weighted``: ``score(d) = sum_i w_i * norm_i(d)``, where ``norm`` is per query and per run:
  ``minmax`` maps the run's scores for that query to [0, 1] (all equal -> 1), ``zscore`` to
  (s - mean) / std (std 0 -> 0). A document missing from a run takes that run's lowest normalised
  score for the query (0 under ``minmax``), as if ranked just below its list.

Queries present in any input run are fused; the result keeps the top ``top_k`` per query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mbert_retrieval.core.types import Run, plural
from mbert_retrieval.results.metrics import rank

FUSION_METHODS = ("rrf", "weighted")
NORMALISATIONS = ("minmax", "zscore")


def _weights(runs: Sequence[Run], weights: Sequence[float] | None) -> list[float]:
    if not runs:
        raise ValueError("fusion needs at least one run")
    if weights is None:
        return [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"{plural(len(weights), 'weight')} given for {plural(len(runs), 'run')}")
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite and non-negative, got {list(weights)}")
    return [float(w) for w in weights]


def _top(scores: dict[str, float], top_k: int | None) -> dict[str, float]:
    if top_k is None or len(scores) <= top_k:
        return scores
    return {d: scores[d] for d in rank(scores)[:top_k]}


def _query_ids(runs: Sequence[Run]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        seen.update(dict.fromkeys(run))
    return list(seen)


def reciprocal_rank_fusion(
    runs: Sequence[Run], *, k: float = 60.0, weights: Sequence[float] | None = None, top_k: int | None = None
) -> Run:
    """Reciprocal rank fusion of ``runs`` (see the module docstring)."""
    if k < 0:
        raise ValueError(f"RRF k must be non-negative, got {k}")
    w = _weights(runs, weights)
    fused: Run = {}
    for qid in _query_ids(runs):
        scores: dict[str, float] = {}
        for weight, run in zip(w, runs, strict=True):
            for position, doc in enumerate(rank(run.get(qid, {})), start=1):
                scores[doc] = scores.get(doc, 0.0) + weight / (k + position)
        fused[qid] = _top(scores, top_k)
    return fused


def normalise(scores: dict[str, float], method: str = "minmax") -> dict[str, float]:
    """One query's scores normalised by ``minmax`` or ``zscore`` (see the module docstring)."""
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; choose from {', '.join(NORMALISATIONS)}")
    if not scores:
        return {}
    values = list(scores.values())
    if method == "minmax":
        low, high = min(values), max(values)
        if high == low:
            return dict.fromkeys(scores, 1.0)
        return {d: (s - low) / (high - low) for d, s in scores.items()}
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if std == 0:
        return dict.fromkeys(scores, 0.0)
    return {d: (s - mean) / std for d, s in scores.items()}


def weighted_score_fusion(
    runs: Sequence[Run],
    *,
    weights: Sequence[float] | None = None,
    normalisation: str = "minmax",
    top_k: int | None = None,
) -> Run:
    """Weighted sum of per-query normalised scores (see the module docstring)."""
    w = _weights(runs, weights)
    fused: Run = {}
    for qid in _query_ids(runs):
        per_run = [normalise(run.get(qid, {}), normalisation) for run in runs]
        docs: dict[str, None] = {}
        for normed in per_run:
            docs.update(dict.fromkeys(normed))
        scores = dict.fromkeys(docs, 0.0)
        for weight, normed in zip(w, per_run, strict=True):
            if not normed:
                continue
            floor = min(normed.values())
            for doc in docs:
                scores[doc] += weight * normed.get(doc, floor)
        fused[qid] = _top(scores, top_k)
    return fused


def fuse(
    runs: Sequence[Run],
    method: str = "rrf",
    *,
    k: float = 60.0,
    weights: Sequence[float] | None = None,
    normalisation: str = "minmax",
    top_k: int | None = None,
) -> Run:
    """``rrf`` or ``weighted`` fusion of ``runs``."""
    if method == "rrf":
        return reciprocal_rank_fusion(runs, k=k, weights=weights, top_k=top_k)
    if method == "weighted":
        return weighted_score_fusion(runs, weights=weights, normalisation=normalisation, top_k=top_k)
    raise ValueError(f"unknown fusion method {method!r}; choose from {', '.join(FUSION_METHODS)}")


__all__ = ["FUSION_METHODS", "NORMALISATIONS", "fuse", "normalise", "reciprocal_rank_fusion", "weighted_score_fusion"]
