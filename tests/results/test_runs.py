"""TREC run files round-trip exactly and re-score identically with pytrec_eval."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.results.metrics import evaluate
from mbert_retrieval.results.runs import read_run, write_run


def test_round_trip_keeps_exact_scores_and_trec_order(tmp_path: Path) -> None:
    run = {"q1": {"a": 0.1 + 0.2, "b": 0.30000000000000004, "c": 1 / 3}, "q2": {"x": -1e-9}}
    path = tmp_path / "run.trec"
    write_run(path, run, tag="my model")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 c 1 0.3333333333333333 my_model"
    # tie between a and b: trec_eval order puts b (greater id) first
    assert [line.split()[2] for line in lines[:3]] == ["c", "b", "a"]
    assert read_run(path) == run


def test_rescore_with_pytrec_eval(tmp_path: Path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels = {"q1": {"a": 1, "c": 2}, "q2": {"x": 1}}
    run = {"q1": {"a": 0.5, "b": 0.5, "c": 0.25}, "q2": {"x": 0.9, "y": 0.95}}
    write_run(tmp_path / "r.trec", run)
    reread = read_run(tmp_path / "r.trec")
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(reread)
    mean = sum(v["ndcg_cut_10"] for v in theirs.values()) / len(theirs)
    assert mean == pytest.approx(evaluate(qrels, run, ["nDCG@10"]).means["nDCG@10"], abs=1e-12)


def test_bad_run_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 a 1 0.5 tag\nq1 a 2 0.4 tag\n")
    with pytest.raises(DataError, match=r"bad.trec:2: expected 6 columns"):
        read_run(path)
    path.write_text("q1 Q0 a 1 high tag\n")
    with pytest.raises(DataError, match=r"bad.trec:1: field 'score': not a number"):
        read_run(path)


def test_ids_with_spaces_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="white space"):
        write_run(tmp_path / "r.trec", {"q 1": {"a": 1.0}})
    assert not (tmp_path / "r.trec").exists()
