"""BM25 (bm25s) with MTEB's baseline settings: hand-computed Lucene scores, stopwords, stemming, and
the published MTEB numbers on the real SciFact and QMSum copies."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mbert_retrieval.config import BM25Config
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.retrieval.bm25 import bm25_search, describe

pytest.importorskip("bm25s")
pytest.importorskip("Stemmer")

IDS = ["d1", "d2", "d3"]
TEXTS = ["dog dog park", "cat park", "bird"]  # lengths 3, 2, 1 tokens: average 2


def _lucene(tf: int, dl: int, df: int, *, n: int = 3, avgdl: float = 2.0, k1: float = 1.5, b: float = 0.75) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_scores_are_lucene_bm25_with_stopwords_and_stemming() -> None:
    # "the" is an English stopword, "dogs" stems to "dog"
    run = bm25_search(IDS, TEXTS, {"q1": "the dogs", "q2": "parks"}, 2, progress=False)
    assert max(v for d, v in run["q1"].items() if d != "d1") == 0.0  # nothing else mentions a dog
    assert run["q1"]["d1"] == pytest.approx(_lucene(2, 3, 1), rel=1e-6)
    assert run["q2"]["d2"] == pytest.approx(_lucene(1, 2, 2), rel=1e-6)
    assert run["q2"]["d1"] == pytest.approx(_lucene(1, 3, 2), rel=1e-6)
    assert run["q2"]["d2"] > run["q2"]["d1"]  # the shorter document wins
    assert all(len(hits) == 2 for hits in run.values())


def test_pyserini_preset_changes_k1_and_b() -> None:
    preset = BM25Config.preset("pyserini")
    assert (preset.k1, preset.b) == (0.9, 0.4)
    run = bm25_search(IDS, TEXTS, {"q": "park"}, 3, k1=preset.k1, b=preset.b, progress=False)
    assert run["q"]["d1"] == pytest.approx(_lucene(1, 3, 2, k1=0.9, b=0.4), rel=1e-6)
    with pytest.raises(ConfigError, match="unknown BM25 preset"):
        BM25Config.preset("lucene")


def test_without_stemming_and_stopwords_words_must_match_exactly() -> None:
    run = bm25_search(IDS, TEXTS, {"q": "dogs"}, 3, stopwords=None, stemmer=None, progress=False)
    assert set(run["q"].values()) == {0.0}  # "dogs" != "dog" without the stemmer


def test_top_k_identical_ids_and_errors() -> None:
    run = bm25_search(IDS, TEXTS, {"q": "park"}, 10, progress=False)
    assert len(run["q"]) == 3  # never more than the corpus (zero scores included, as MTEB)
    run = bm25_search(["q", *IDS], ["park", *TEXTS], {"q": "park"}, 2, ignore_identical_ids=True, progress=False)
    assert "q" not in run["q"] and len(run["q"]) == 2
    with pytest.raises(ValueError, match="differ in length"):
        bm25_search(IDS, TEXTS[:2], {"q": "x"}, 1, progress=False)
    with pytest.raises(ConfigError, match="unknown stemmer language"):
        bm25_search(IDS, TEXTS, {"q": "x"}, 1, stemmer="klingon", progress=False)


def test_describe_fingerprint_follows_settings() -> None:
    a, b = describe(), describe(k1=0.9, b=0.4)
    assert a["name"] == "bm25" and a["k1"] == 1.5 and a["library"].startswith("bm25s ")
    assert a["fingerprint"] != b["fingerprint"] and describe()["fingerprint"] == a["fingerprint"]


@pytest.mark.parametrize(
    ("folder", "published"),
    [("scifact", 0.68736), ("qmsum-longembed", 0.83231)],  # MTEB mteb/baseline-bm25s (shared/reference)
)
def test_published_mteb_bm25s_numbers(data_dir: Path, folder: str, published: float) -> None:
    from mbert_retrieval.data.beir import load_beir_folder
    from mbert_retrieval.results.metrics import evaluate

    ds = load_beir_folder(data_dir / folder, "test")
    run = bm25_search(ds.corpus_ids, ds.corpus_texts, ds.queries, 1000, progress=False)
    assert abs(evaluate(ds.qrels, run, ["nDCG@10"]).means["nDCG@10"] - published) < 0.005


def test_equals_mtebs_own_bm25_baseline(data_dir: Path) -> None:
    """Parity with the reference: MTEB's ``BM25Search`` (mteb/baseline-bm25s) on the same SciFact files
    gives the same documents with the same scores (MTEB indexes "\\n".join([title, text]))."""
    mteb_bm25 = pytest.importorskip("mteb.models.model_implementations.bm25")
    datasets = pytest.importorskip("datasets")
    import types

    from mbert_retrieval.data.beir import find_file, iter_jsonl, load_beir_folder

    folder = data_dir / "scifact"
    ds = load_beir_folder(folder, "test")
    rows = [
        {"id": str(o["_id"]), "title": o.get("title") or "", "text": o.get("text") or ""}
        for _, o in iter_jsonl(find_file(folder, "corpus.jsonl"))
    ]
    meta = types.SimpleNamespace(eval_langs=["eng-Latn"], name="SciFact")
    ref = mteb_bm25.BM25Search()
    kwargs = {"task_metadata": meta, "hf_split": "test", "hf_subset": "default", "encode_kwargs": {}}
    ref.index(datasets.Dataset.from_list(rows), **kwargs)
    queries = datasets.Dataset.from_list([{"id": q, "text": t} for q, t in ds.queries.items()])
    expected = ref.search(queries, top_k=100, **kwargs)
    ours = bm25_search(ds.corpus_ids, ds.corpus_texts, ds.queries, 100, progress=False)
    assert ours.keys() == expected.keys()
    for qid in expected:
        assert ours[qid] == pytest.approx(expected[qid], rel=1e-6)
