"""Exact MaxSim equals a straightforward numpy implementation (to 1e-5) and round-trips on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.config import ExactMaxSimSpec
from mbert_retrieval.indexes.maxsim import ExactMaxSimIndex, top_k


def _token_mats(rng: np.random.Generator, n: int, dim: int, lo: int, hi: int) -> list[np.ndarray]:
    mats = []
    for _ in range(n):
        m = rng.standard_normal((int(rng.integers(lo, hi)), dim)).astype(np.float32)
        mats.append(m / np.linalg.norm(m, axis=1, keepdims=True))
    return mats


def naive_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float(sum(max(float(np.dot(qi, dj)) for dj in d) for qi in q))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_scores_equal_naive_numpy(dtype: str) -> None:
    rng = np.random.default_rng(0)
    docs = _token_mats(rng, 60, 16, 1, 40)
    queries = _token_mats(rng, 7, 16, 3, 33)  # variable query lengths (no expansion)
    # tiny blocks: documents are split over many matrix products, as on a large corpus
    index = ExactMaxSimIndex(16, ExactMaxSimSpec(dtype=dtype, block_tokens=1024), query_batch_size=3)
    index.add([f"d{i}" for i in range(30)], docs[:30])
    index.add([f"d{i}" for i in range(30, 60)], docs[30:])
    stored = [d.astype(dtype).astype(np.float32) for d in docs]  # what the index holds
    got = index.score_all(queries)
    for qi, q in enumerate(queries):
        for di, d in enumerate(stored):
            assert got[qi, di] == pytest.approx(naive_maxsim(q, d), abs=1e-5)
    run = index.search([f"q{i}" for i in range(7)], queries, 5)
    for qi, q in enumerate(queries):
        expected = sorted(range(60), key=lambda j: -naive_maxsim(q, stored[j]))[:5]
        assert list(run[f"q{qi}"]) == [f"d{j}" for j in expected]


def test_blocks_cover_every_document_once() -> None:
    index = ExactMaxSimIndex(4, ExactMaxSimSpec(block_tokens=1024))
    rng = np.random.default_rng(1)
    index.add([f"d{i}" for i in range(50)], [rng.standard_normal((t, 4)) for t in rng.integers(1, 900, 50)])
    _, offsets = index._packed()
    blocks = index._blocks(offsets)
    assert blocks[0][0] == 0 and blocks[-1][1] == 50
    assert all(a < b for a, b in blocks) and all(blocks[i][1] == blocks[i + 1][0] for i in range(len(blocks) - 1))


def test_identical_ids_save_load_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    docs = _token_mats(rng, 10, 8, 2, 6)
    index = ExactMaxSimIndex(8)
    ids = ["q0", *[f"d{i}" for i in range(1, 10)]]
    index.add(ids, docs)
    q = [docs[0]]
    assert next(iter(index.search(["q0"], q, 3))) == "q0"
    assert "q0" not in index.search(["q0"], q, 3, ignore_identical_ids=True)["q0"]
    index.save(tmp_path / "ix")
    loaded = ExactMaxSimIndex.load(tmp_path / "ix")
    assert loaded.search(["q0"], q, 10) == index.search(["q0"], q, 10)
    with pytest.raises(ValueError, match=r"token matrix must be \[tokens >= 1, 8\]"):
        index.add(["x"], [np.zeros((0, 8), np.float32)])


def test_top_k_orders_ties_by_index() -> None:
    assert top_k(np.array([0.5, 0.9, 0.5, 0.1], np.float32), 3).tolist() == [1, 0, 2]
    assert top_k(np.array([1.0], np.float32), 5).tolist() == [0]
