"""Hard-negative mining: judged positives never become negatives, the rank window and margins hold,
and the triples file loads with the training loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_beir

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.data import training
from mbert_retrieval.flows.mine import (
    MiningInput,
    MiningOptions,
    input_from_beir,
    input_from_pairs,
    mine,
    select_negatives,
)

TOPICS = {
    "python": ["sort a list in Python", "Python list comprehension syntax", "reverse a Python list in place"],
    "cooking": ["boil pasta in salted water", "bake bread with sourdough starter", "roast vegetables in the oven"],
    "space": ["the Moon orbits the Earth", "Mars has two small moons", "Jupiter is the largest planet"],
    "music": ["tune a guitar by ear", "play piano scales daily", "read sheet music notes"],
    "health": ["drink water when exercising", "sleep eight hours a night", "walk every day for the heart"],
}


@pytest.fixture
def topic_beir(tmp_path: Path) -> Path:
    corpus, queries, train = [], [], []
    for t, (topic, texts) in enumerate(TOPICS.items()):
        for i, text in enumerate(texts):
            corpus.append({"_id": f"{topic}-{i}", "title": "", "text": text})
        corpus.append({"_id": f"{topic}-dup", "title": "", "text": texts[0]})  # same text as a positive
        query = f"questions about {topic}: {texts[0].split()[0]} {texts[1].split()[-1]}"
        queries.append({"_id": f"q{t}", "text": query})
        train += [(f"q{t}", f"{topic}-0", 1), (f"q{t}", f"{topic}-1", 2), (f"q{t}", f"{topic}-2", 0)]
    return write_beir(tmp_path / "topics", corpus, queries, {"train": train})


def _scores(minilm: str, queries: list[str], docs: list[str]) -> np.ndarray:
    from mbert_retrieval.encoders.dense import DenseEncoder

    enc = DenseEncoder(minilm, show_progress=False)
    return enc.encode_queries(queries) @ enc.encode_documents(docs).T


def test_beir_negatives_skip_positives_and_respect_window_and_margin(
    tmp_path: Path, topic_beir: Path, minilm_path: str
) -> None:
    data = input_from_beir(topic_beir, "train")
    assert len(data.rows) == 10 and len(data.queries) == 5  # two judgements >= 1 per query
    out = tmp_path / "triples.jsonl"
    options = MiningOptions(num_negatives=2, range_min=1, range_max=6, absolute_margin=0.02)
    summary = mine(data, minilm_path, out, options=options, progress=False)

    scores = _scores(minilm_path, data.queries, data.doc_texts)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary["rows_written"] > 0
    assert summary["rows_written"] + summary["rows_dropped_too_few_negatives"] == 10
    for row in rows:
        q = data.queries.index(row["query"])
        positive_texts = {data.doc_texts[d] for d in data.positives[q]}
        assert positive_texts & set(row["negatives"]) == set()  # neither judged positives nor their duplicates
        order = [d for d in np.argsort(-scores[q]) if data.doc_texts[d] not in positive_texts]
        window = {data.doc_texts[d] for d in order[1:6]}
        assert set(row["negatives"]) <= window
        pos = scores[q][data.doc_texts.index(row["positive"])]
        for neg in row["negatives"]:
            assert scores[q][data.doc_texts.index(neg)] <= pos - 0.02 + 1e-5

    loaded = training.triples(out)
    assert loaded.column_names == ["query", "positive", "negative_1", "negative_2"]
    assert len(loaded) == len(rows) and loaded[0]["negative_2"] == rows[0]["negatives"][1]
    saved = json.loads((tmp_path / "triples.jsonl.summary.json").read_text())
    assert saved["options"]["range_min"] == 1 and saved["candidates_skipped"]["judged positive or same text"] > 0


def test_select_negatives_margins_and_window() -> None:
    data = MiningInput(
        doc_ids=[f"d{i}" for i in range(6)],
        doc_texts=[f"text {i}" for i in range(6)],
        queries=["q"],
        positives=[{0}],
        rows=[(0, 0)],
        source="test",
    )
    ranked = [[(0, 0.90), (1, 0.89), (2, 0.80), (3, 0.70), (4, 0.60), (5, 0.50)]]
    pick = lambda **kw: select_negatives(data, ranked, [0.9], MiningOptions(**kw))  # noqa: E731
    chosen, skipped = pick(num_negatives=2, range_max=5)
    assert [d for d, _ in chosen[0]] == [1, 2] and skipped["judged positive or same text"] == 1
    chosen, _ = pick(num_negatives=2, range_min=1, range_max=5)
    assert [d for d, _ in chosen[0]] == [2, 3]  # rank 0 among non-positives (doc 1) skipped
    chosen, skipped = pick(num_negatives=2, absolute_margin=0.05)  # keep score <= 0.85
    assert [d for d, _ in chosen[0]] == [2, 3] and skipped["margin"] == 1
    chosen, _ = pick(num_negatives=2, relative_margin=0.2)  # keep score <= 0.72
    assert [d for d, _ in chosen[0]] == [3, 4]
    chosen, _ = pick(num_negatives=2, max_score=0.65)
    assert [d for d, _ in chosen[0]] == [4, 5]
    chosen, _ = pick(num_negatives=2, range_min=3, range_max=5, absolute_margin=0.35)  # docs 4, 5 -> only 5
    assert chosen == [None]
    a, _ = pick(num_negatives=2, sampling="random", seed=3)
    b, _ = pick(num_negatives=2, sampling="random", seed=3)
    assert a == b and len(a[0]) == 2 and 0 not in [d for d, _ in a[0]]


def test_pairs_file_tsv_round_trip_and_shared_positives(tmp_path: Path, minilm_path: str) -> None:
    pairs = tmp_path / "pairs.tsv"
    lines = [f"{texts[0]}?\t{text}" for texts in TOPICS.values() for text in texts[:2]]  # 2 positives per query
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra = tmp_path / "extra.tsv"
    extra.write_text("id\ttext\nx1\tcats sleep most of the day\nx2\tthe stock market fell\n", encoding="utf-8")
    data = input_from_pairs(pairs, extra)
    assert len(data.queries) == 5 and len(data.rows) == 10 and len(data.doc_texts) == 12
    out = tmp_path / "mined.tsv"
    argv = ["mine", "--pairs", str(pairs), "--corpus", str(extra), "--model", minilm_path, "--out", str(out)]
    argv += ["--num-negatives", "3", "--range-max", "8", "--relative-margin", "0.05", "--sampling", "random"]
    assert main([*argv, "--no-progress"]) == 0
    loaded = training.triples(out)
    assert loaded.column_names == ["query", "positive", "negative_1", "negative_2", "negative_3"]
    for row in loaded:
        q = data.queries.index(row["query"])
        shared = {data.doc_texts[d] for d in data.positives[q]}
        assert len(shared) == 2
        assert not shared & {row["negative_1"], row["negative_2"], row["negative_3"]}


def test_bad_mining_input(tmp_path: Path, minilm_path: str) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{"query": "q2"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: field 'positive': missing or empty"):
        input_from_pairs(bad)
    with pytest.raises(ConfigError, match="holds fewer than num_negatives=5"):
        MiningOptions(num_negatives=5, range_min=2, range_max=4)
    good = tmp_path / "p.tsv"
    good.write_text("a query\ta positive\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must end in \.jsonl or \.tsv"):
        mine(input_from_pairs(good), minilm_path, tmp_path / "x.txt", progress=False)
    argv = ["mine", "--pairs", str(good), "--model", minilm_path, "--out", str(tmp_path / "o.jsonl"), "--no-progress"]
    assert main(argv) == 1  # one candidate document: nothing can be mined, said as an error
    assert not (tmp_path / "o.jsonl").exists()
