"""The shard cache: encodes each shard once, resumes after an interruption, heals bad shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.encoders.cache import iter_document_embeddings


class CountingEncoder:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_after = fail_after

    def __call__(self, texts, desc):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # a user's Ctrl-C in the middle of a long encode
        self.calls.append(len(texts))
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


def _collect(cache_dir, enc, texts, shard_size=3):
    ids = [f"d{i}" for i in range(len(texts))]
    parts = list(
        iter_document_embeddings(
            ids, texts, enc, encoder_fingerprint="fp", dim=2, cache_dir=cache_dir, shard_size=shard_size
        )
    )
    assert [r.start for r, _ in parts] == list(range(0, len(texts), shard_size))
    return np.concatenate([e for _, e in parts])


TEXTS = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g"]


def test_no_cache_encodes_everything(tmp_path: Path) -> None:
    enc = CountingEncoder()
    out = _collect(None, enc, TEXTS)
    assert enc.calls == [3, 3, 1]
    np.testing.assert_array_equal(out[:, 0], [len(t) for t in TEXTS])


def test_interrupted_run_resumes_from_finished_shards(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _collect(tmp_path, CountingEncoder(fail_after=2), TEXTS)
    (entry,) = [p for p in tmp_path.iterdir()]
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "shard-00000.npy", "shard-00001.npy"]
    enc = CountingEncoder()
    out = _collect(tmp_path, enc, TEXTS)
    assert enc.calls == [1]  # only the missing last shard
    np.testing.assert_array_equal(out[:, 0], [len(t) for t in TEXTS])
    again = CountingEncoder()
    _collect(tmp_path, again, TEXTS)
    assert again.calls == []


def test_corrupt_shard_is_encoded_again(tmp_path: Path) -> None:
    _collect(tmp_path, CountingEncoder(), TEXTS)
    shard = next(tmp_path.glob("*/shard-00001.npy"))
    shard.write_bytes(b"garbage")
    enc = CountingEncoder()
    out = _collect(tmp_path, enc, TEXTS)
    assert enc.calls == [3]
    np.testing.assert_array_equal(out[:, 0], [len(t) for t in TEXTS])


def test_other_corpus_or_encoder_gets_its_own_entry(tmp_path: Path) -> None:
    _collect(tmp_path, CountingEncoder(), TEXTS)
    _collect(tmp_path, CountingEncoder(), [*TEXTS[:-1], "changed"])
    assert len(list(tmp_path.iterdir())) == 2


class TokenEncoder:
    """One token matrix per text: len(text) tokens of width 2."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts, desc):
        self.calls.append(len(texts))
        return [np.full((len(t), 2), len(t), dtype=np.float32) for t in texts]


def test_multi_vector_shards_round_trip_in_fp16(tmp_path: Path) -> None:
    ids = [f"d{i}" for i in range(len(TEXTS))]

    def collect(enc):
        parts = list(
            iter_document_embeddings(
                ids, TEXTS, enc, encoder_fingerprint="fp", dim=2, cache_dir=tmp_path, multi=True, shard_size=3
            )
        )
        return [m for _, mats in parts for m in mats]

    first = collect(TokenEncoder())
    enc = TokenEncoder()
    again = collect(enc)
    assert enc.calls == []
    assert [m.shape for m in again] == [(len(t), 2) for t in TEXTS]
    assert all(m.dtype == np.float16 for m in again)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.astype(np.float16), b)
    assert sorted(p.name for p in next(tmp_path.iterdir()).iterdir())[-1] == "shard-00002.npz"
