"""Metrics equal hand-computed values and pytrec_eval (trec_eval), ties included."""

from __future__ import annotations

import math
import random

import pytest

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.results.metrics import Measure, evaluate, parse_measure, rank

QRELS = {"q1": {"a": 2, "b": 1, "c": 0, "z": 1}, "q2": {"x": 1}}
RUN = {"q1": {"c": 0.9, "a": 0.8, "d": 0.7, "b": 0.6}, "q2": {"y": 0.5, "x": 0.4}}


def test_hand_computed_values() -> None:
    ev = evaluate(QRELS, RUN, ["nDCG@3", "R@2", "RR@10", "MAP@100", "P@2"])
    # q1 ranking c a d b: gains 0 2 0 1; ideal gains 2 1 1
    dcg3 = 2 / math.log2(3)
    idcg3 = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ev.per_query["nDCG@3"]["q1"] == pytest.approx(dcg3 / idcg3, abs=1e-12)
    # q2: x at rank 2 of 1 relevant
    assert ev.per_query["nDCG@3"]["q2"] == pytest.approx(1 / math.log2(3), abs=1e-12)
    assert ev.per_query["R@2"] == {"q1": pytest.approx(1 / 3), "q2": 1.0}
    assert ev.per_query["RR@10"] == {"q1": 0.5, "q2": 0.5}
    # AP: q1 relevant a@2, b@4 of 3 relevant -> (1/2 + 2/4) / 3 ; q2: (1/2) / 1
    assert ev.per_query["MAP@100"] == {"q1": pytest.approx(1 / 3), "q2": 0.5}
    assert ev.per_query["P@2"] == {"q1": 0.5, "q2": 0.5}
    assert ev.means["RR@10"] == 0.5
    assert (ev.n_queries, ev.n_missing) == (2, 0)


def test_cutoff_applies_to_rr() -> None:
    run = {"q2": {f"n{i}": 1.0 - i / 100 for i in range(10)} | {"x": 0.0}}
    assert evaluate({"q2": {"x": 1}}, run, ["RR@10", "RR@11"]).means == {"RR@10": 0.0, "RR@11": 1 / 11}


def test_ties_break_by_doc_id_descending_like_trec_eval() -> None:
    assert rank({"a": 1.0, "c": 1.0, "b": 1.0, "d": 2.0}) == ["d", "c", "b", "a"]


def test_queries_absent_from_the_run_are_not_scored_but_counted() -> None:
    ev = evaluate(QRELS, {"q1": RUN["q1"]}, ["nDCG@10"])
    assert (ev.n_queries, ev.n_missing) == (1, 1)
    assert ev.means["nDCG@10"] == ev.per_query["nDCG@10"]["q1"]
    # present with no hits: scored as 0, as pytrec_eval does
    ev = evaluate(QRELS, {"q1": RUN["q1"], "q2": {}}, ["nDCG@10"])
    assert (ev.n_queries, ev.n_missing, ev.per_query["nDCG@10"]["q2"]) == (2, 0, 0.0)


def test_measure_names() -> None:
    assert parse_measure("MAP@100") == Measure("AP", 100)
    assert str(parse_measure("nDCG@10")) == "nDCG@10"
    for bad in ("ndcg@10", "nDCG@0", "nDCG", "MRR@10", "R@-1"):
        with pytest.raises(ConfigError, match="unknown measure"):
            parse_measure(bad)


def _random_case(rng: random.Random, with_ties: bool) -> tuple[dict, dict]:
    qrels, run = {}, {}
    for q in range(6):
        qid = f"q{q}"
        qrels[qid] = {f"d{rng.randint(0, 40)}": rng.choice([0, 1, 1, 2, 3]) for _ in range(rng.randint(1, 8))}
        values = [0.1, 0.2, 0.5, 0.5, 1.0] if with_ties else []
        run[qid] = {
            f"d{rng.randint(0, 40)}": rng.choice([*values, rng.random()]) if with_ties else rng.random()
            for _ in range(rng.randint(0, 30))
        }
    return qrels, run


@pytest.mark.parametrize("with_ties", [False, True])
def test_equal_to_pytrec_eval(with_ties: bool) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    ours_to_trec = {
        "nDCG@10": "ndcg_cut_10",
        "nDCG@3": "ndcg_cut_3",
        "R@100": "recall_100",
        "R@5": "recall_5",
        "AP@100": "map_cut_100",
        "AP@5": "map_cut_5",
        "P@10": "P_10",
    }
    rng = random.Random(7 + with_ties)
    for _ in range(100):
        qrels, run = _random_case(rng, with_ties)
        ev = evaluate(qrels, run, [*list(ours_to_trec), "RR@1000"])
        measures = {"ndcg_cut.3,10", "recall.5,100", "map_cut.5,100", "P.10", "recip_rank"}
        theirs = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        assert set(theirs) == set(ev.per_query["nDCG@10"])
        for qid, values in theirs.items():
            for ours, trec in ours_to_trec.items():
                assert ev.per_query[ours][qid] == pytest.approx(values[trec], abs=1e-12), (ours, qid)
            # recip_rank has no cutoff in trec_eval; RR@1000 is beyond every run's depth here
            assert ev.per_query["RR@1000"][qid] == pytest.approx(values["recip_rank"], abs=1e-12)


def test_equal_to_ir_measures_without_ties() -> None:
    ir_measures = pytest.importorskip("ir_measures")
    rng = random.Random(3)
    names = ["nDCG@10", "R@100", "RR@10", "AP@100", "P@10"]
    for _ in range(30):
        qrels, run = _random_case(rng, with_ties=False)
        run = {qid: hits for qid, hits in run.items() if hits}  # ir_measures scores absent queries as 0
        qrels = {qid: judged for qid, judged in qrels.items() if qid in run}
        ev = evaluate(qrels, run, names)
        theirs = ir_measures.calc_aggregate([ir_measures.parse_measure(n) for n in names], qrels, run)
        for n in names:
            assert ev.means[n] == pytest.approx(theirs[ir_measures.parse_measure(n)], abs=1e-12), n
