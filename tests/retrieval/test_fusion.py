"""Run fusion on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from mbert_retrieval.retrieval.fusion import fuse, normalise, reciprocal_rank_fusion, weighted_score_fusion

A = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
B = {"q1": {"d3": 0.9, "d1": 0.5, "d4": 0.1}, "q2": {"d9": 1.0}}


def test_rrf_by_hand() -> None:
    fused = reciprocal_rank_fusion([A, B], k=1)
    assert fused["q1"] == pytest.approx({"d1": 1 / 2 + 1 / 3, "d3": 1 / 4 + 1 / 2, "d2": 1 / 3, "d4": 1 / 4})
    assert fused["q2"] == pytest.approx({"d9": 1 / 2})  # a query in one run only is kept
    default = reciprocal_rank_fusion([A, B])
    assert default["q1"]["d1"] == pytest.approx(1 / 61 + 1 / 62)
    weighted = reciprocal_rank_fusion([A, B], k=1, weights=[2.0, 0.0])
    assert weighted["q1"] == pytest.approx({"d1": 1.0, "d2": 2 / 3, "d3": 0.5, "d4": 0.0})


def test_rrf_ranks_ties_in_trec_eval_order() -> None:
    tied = {"q": {"a": 1.0, "b": 1.0}}  # trec_eval: equal scores, document id descending -> b first
    assert reciprocal_rank_fusion([tied], k=0) == {"q": {"b": 1.0, "a": 0.5}}


def test_top_k_keeps_the_best() -> None:
    fused = reciprocal_rank_fusion([A, B], k=1, top_k=2)
    assert set(fused["q1"]) == {"d1", "d3"}


def test_normalise() -> None:
    assert normalise({"a": 3.0, "b": 2.0, "c": 1.0}) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert normalise({"a": 2.0, "b": 2.0}) == {"a": 1.0, "b": 1.0}
    z = normalise({"a": 3.0, "b": 2.0, "c": 1.0}, "zscore")
    assert z == pytest.approx({"a": math.sqrt(1.5), "b": 0.0, "c": -math.sqrt(1.5)})
    assert normalise({"a": 5.0}, "zscore") == {"a": 0.0}
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise({"a": 1.0}, "rank")


def test_weighted_minmax_by_hand() -> None:
    # A -> d1 1, d2 .5, d3 0; B -> d3 1, d1 .5, d4 0; a document missing from a run scores that run's minimum (0)
    fused = weighted_score_fusion([A, B])
    assert fused["q1"] == pytest.approx({"d1": 1.5, "d2": 0.5, "d3": 1.0, "d4": 0.0})
    fused = weighted_score_fusion([A, B], weights=[2.0, 1.0])
    assert fused["q1"] == pytest.approx({"d1": 2.5, "d2": 1.0, "d3": 1.0, "d4": 0.0})


def test_weighted_zscore_by_hand() -> None:
    s = math.sqrt(1.5)  # z of the top and bottom of three evenly spaced scores
    fused = weighted_score_fusion([A, B], normalisation="zscore")
    assert fused["q1"] == pytest.approx({"d1": s, "d2": -s, "d3": 0.0, "d4": -2 * s})


def test_fuse_dispatch_and_errors() -> None:
    assert fuse([A, B], "rrf", k=1) == reciprocal_rank_fusion([A, B], k=1)
    assert fuse([A, B], "weighted", normalisation="zscore") == weighted_score_fusion([A, B], normalisation="zscore")
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse([A, B], "combsum")
    with pytest.raises(ValueError, match=r"2 weights given for 1 run$"):
        fuse([A], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        fuse([A, B], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least one run"):
        fuse([])
