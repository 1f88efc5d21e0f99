"""The FAISS flat index equals exact numpy search; save/load round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.config import FaissSpec
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.indexes.faiss_index import FaissIndex


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_equals_numpy_brute_force() -> None:
    rng = np.random.default_rng(0)
    docs, queries = _unit(rng, 2000, 48), _unit(rng, 300, 48)
    doc_ids = [f"d{i}" for i in range(len(docs))]
    index = FaissIndex(48)
    index.add(doc_ids[:1200], docs[:1200])  # added in two chunks, as the pipeline streams shards
    index.add(doc_ids[1200:], docs[1200:])
    k = 25
    run = index.search([f"q{i}" for i in range(len(queries))], queries, k)
    exact = queries @ docs.T
    for i in range(len(queries)):
        top = np.argsort(-exact[i], kind="stable")[:k]
        hits = run[f"q{i}"]
        assert list(hits) == [doc_ids[j] for j in top]
        np.testing.assert_allclose(list(hits.values()), exact[i, top], atol=1e-5)


def test_k_larger_than_corpus_and_identical_ids() -> None:
    rng = np.random.default_rng(1)
    docs = _unit(rng, 5, 8)
    index = FaissIndex(8)
    index.add(["a", "b", "q1", "c", "d"], docs)
    run = index.search(["q1"], docs[2:3], 1000)
    assert len(run["q1"]) == 5 and next(iter(run["q1"])) == "q1"
    run = index.search(["q1"], docs[2:3], 3, ignore_identical_ids=True)
    assert "q1" not in run["q1"] and len(run["q1"]) == 3


def test_shape_errors() -> None:
    index = FaissIndex(8)
    with pytest.raises(ValueError, match=r"shape \[n, 8\]"):
        index.add(["a"], np.zeros((1, 9), np.float32))
    with pytest.raises(ValueError, match=r"2 document ids but 1 embeddings"):
        index.add(["a", "b"], np.zeros((1, 8), np.float32))
    with pytest.raises(ConfigError, match="m=3 sub-quantisers must divide the dimension 8"):
        FaissIndex(8, FaissSpec(type="ivf-pq", m=3))
    ivf = FaissIndex(8, FaissSpec(type="ivf-flat", nlist=64))
    with pytest.raises(ConfigError, match="nlist=64 needs at least 64 training vectors"):
        ivf.add([f"d{i}" for i in range(10)], np.ones((10, 8), np.float32))
    assert len(ivf) == 0


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    docs = _unit(rng, 100, 16)
    index = FaissIndex(16)
    index.add([f"d{i}" for i in range(100)], docs)
    index.save(tmp_path / "idx")
    loaded = FaissIndex.load(tmp_path / "idx")
    q = _unit(rng, 7, 16)
    ids = [f"q{i}" for i in range(7)]
    assert loaded.search(ids, q, 10) == index.search(ids, q, 10)
    (tmp_path / "idx" / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"manifest\.json: missing"):
        FaissIndex.load(tmp_path / "idx")


@pytest.mark.parametrize(
    "spec",
    [
        FaissSpec(type="hnsw", M=16, ef_search=64),
        FaissSpec(type="ivf-flat", nlist=16, nprobe=16),
        FaissSpec(type="sq", sq_type="fp16"),
    ],
)
def test_approximate_kinds_find_the_exact_neighbours_when_searching_wide(spec: FaissSpec, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    docs, queries = _unit(rng, 1000, 32), _unit(rng, 50, 32)
    ids = [f"d{i}" for i in range(1000)]
    exact, approx = FaissIndex(32), FaissIndex(32, spec)
    exact.add(ids, docs)
    approx.add(ids, docs)
    approx.save(tmp_path / "idx")
    reloaded = FaissIndex.load(tmp_path / "idx")
    assert reloaded.spec == spec
    qids = [f"q{i}" for i in range(50)]
    truth, got = exact.search(qids, queries, 10), reloaded.search(qids, queries, 10)
    recall = np.mean([len(set(truth[q]) & set(got[q])) / 10 for q in qids])
    assert recall >= 0.95, recall
