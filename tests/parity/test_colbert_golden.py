"""The golden check of the move from PyLate 1.6 to sentence-transformers 6: a ColBERT checkpoint in PyLate's
layout and the token embeddings ``pylate.models.ColBERT`` gave for fixed texts, both recorded on the old
stack (``tests/fixtures/build_pylate_fixture.py``), are reproduced by today's ``ColBERTEncoder``; and a
plain encoder still becomes the same ColBERT PyLate made of it (same seeded weights, same fingerprint)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from mbert_retrieval.encoders import detect_kind
from mbert_retrieval.encoders.colbert import ColBERTEncoder

CHECKPOINT = FIXTURES / "pylate-colbert"
GOLDEN = json.loads((FIXTURES / "pylate-golden.json").read_text(encoding="utf-8"))
# ColBERTEncoder(...).fingerprint() on the old stack (PyLate 1.6, sentence-transformers 5.3), 2026-12-02:
OLD_FINGERPRINT = "286a471d2ec7e7173e00cfbed28860b9"  # the fixture checkpoint (also in its old index manifests)
OLD_MINILM_DENSE_FINGERPRINT = "87b715cbb161d544f9812922930ca3e5"  # all-MiniLM-L6-v2, dense


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "pylate-golden.npz") as arrays:
        return {k: arrays[k] for k in arrays.files}


@pytest.mark.parametrize("unpad", [False, True])
def test_pylate_checkpoint_reproduces_the_recorded_token_embeddings(golden, unpad: bool) -> None:
    encoder = ColBERTEncoder(str(CHECKPOINT), device="cpu", unpad=unpad, show_progress=False)
    d = encoder.describe()
    assert (d["query_length"], d["document_length"], d["dim"], d["query_expansion"]) == (16, 40, 32, True)
    assert encoder.markers == {"query": "[Q] ", "document": "[D] "}
    queries = encoder.encode_queries(GOLDEN["queries"])
    documents = encoder.encode_documents(GOLDEN["documents"])
    for prefix, mats in (("q", queries), ("d", documents)):
        for i, m in enumerate(mats):
            expected = golden[f"{prefix}{i}"]
            assert m.shape == expected.shape, f"{prefix}{i}"  # same tokens kept: skiplist, expansion, truncation
            np.testing.assert_allclose(m, expected, atol=1e-6, rtol=0)
    assert encoder.fingerprint() == OLD_FINGERPRINT


def test_a_save_by_the_installed_sentence_transformers_loads_back_the_same(tmp_path: Path, golden) -> None:
    encoder = ColBERTEncoder(str(CHECKPOINT), device="cpu", show_progress=False)
    encoder.save(tmp_path / "st6")
    modules = json.loads((tmp_path / "st6" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Dense", "MultiVectorMask", "Normalize"]
    assert detect_kind(str(tmp_path / "st6")) == "colbert"
    again = ColBERTEncoder(str(tmp_path / "st6"), device="cpu", show_progress=False)
    assert again.describe() | {"name": ""} == encoder.describe() | {"name": ""}
    for i, m in enumerate(again.encode_documents(GOLDEN["documents"])):
        np.testing.assert_allclose(m, golden[f"d{i}"], atol=1e-6, rtol=0)


def test_plain_encoder_becomes_the_colbert_pylate_made(tmp_path: Path, minilm_path: str) -> None:
    """all-MiniLM-L6-v2 (a single-vector sentence-transformers 5.x save) as a ColBERT: [Q]/[D] added as
    marker tokens, seeded 128-dim projection, PyLate's default lengths: the same weights and settings
    as PyLate 1.6 built from it (recorded in fixtures/pylate-minilm-colbert.json), and the dense model keeps
    its old fingerprint."""
    import hashlib

    from mbert_retrieval.encoders.dense import DenseEncoder

    encoder = ColBERTEncoder(minilm_path, device="cpu", show_progress=False)
    d = encoder.describe()
    assert (d["dim"], d["query_length"], d["document_length"], d["query_expansion"]) == (128, 32, 180, True)
    # The weights PyLate 1.6 built, recorded on the old stack: the seeded projection bit for bit; the two
    # marker rows that transformers' mean resizing draws through a Cholesky factor, within float rounding
    # (that draw differs in the last bits between CPUs, so the whole-model fingerprint is per machine:
    # 22aa249e... on the Intel machine of 2026-12-02, ac5f6e3b... on an AMD EPYC, old and new stack alike).
    made = json.loads((FIXTURES / "pylate-minilm-colbert.json").read_text(encoding="utf-8"))
    params = dict(encoder.model.named_parameters())
    projection = next(p for name, p in params.items() if name.endswith("linear.weight")).detach().numpy()
    assert list(projection.shape) == made["projection_shape"]
    digest = hashlib.blake2b(np.ascontiguousarray(projection, dtype=np.float32).tobytes(), digest_size=16)
    assert digest.hexdigest() == made["projection_blake2b"]
    assert encoder.tokenizer.convert_tokens_to_ids(made["marker_tokens"]) == made["marker_ids"]
    embeddings = next(p for name, p in params.items() if name.endswith("word_embeddings.weight")).detach().numpy()
    np.testing.assert_allclose(embeddings[made["marker_ids"]], np.array(made["marker_rows"]), rtol=0, atol=1e-5)
    tokens = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer("[D] a b")["input_ids"])
    assert tokens[:2] == ["[CLS]", "[D] "]
    assert DenseEncoder(minilm_path, device="cpu", show_progress=False).fingerprint() == OLD_MINILM_DENSE_FINGERPRINT
    # seeded: the same model twice, another seed another projection
    assert ColBERTEncoder(minilm_path, device="cpu", show_progress=False).fingerprint() == encoder.fingerprint()
    assert ColBERTEncoder(minilm_path, device="cpu", seed=1, show_progress=False).fingerprint() != encoder.fingerprint()


def test_overrides_on_a_checkpoint(tmp_path: Path, golden) -> None:
    shutil.copytree(CHECKPOINT, tmp_path / "ckpt")
    encoder = ColBERTEncoder(str(tmp_path / "ckpt"), query_length=24, query_expansion=False, show_progress=False)
    assert (encoder.query_length, encoder.query_expansion) == (24, False)
    assert encoder.encode_queries(["wrap a paragraph of text"])[0].shape[0] < 16  # no [MASK] padding
    encoder = ColBERTEncoder(str(tmp_path / "ckpt"), query_length=20, show_progress=False)
    assert encoder.encode_queries(["x"])[0].shape == (20, 32)
    assert encoder.fingerprint() != OLD_FINGERPRINT


def test_an_index_built_on_the_old_stack_searches_the_same(tmp_path: Path) -> None:
    """A PLAID index ``index build`` wrote with PyLate 1.6 / fast-plaid 1.4.6: its manifest's encoder
    fingerprint matches today's encoder of the same checkpoint, and search gives the recorded top 10."""
    from mbert_retrieval.retrieval.search import SearchIndex

    shutil.copytree(FIXTURES / "pylate-indices" / "plaid", tmp_path / "plaid")  # fast-plaid writes a lock file
    recorded = json.loads((FIXTURES / "pylate-indices" / "runs.json").read_text())["plaid"]
    lines = (FIXTURES / "pylate-corpus" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    queries = {q["_id"]: q["text"] for q in map(json.loads, lines) if q["_id"] in recorded}
    with SearchIndex.load(tmp_path / "plaid", model=str(CHECKPOINT)) as index:
        assert index.manifest["encoder"]["fingerprint"] == OLD_FINGERPRINT == index.encoder.fingerprint()
        run = index.run(queries, k=10)
    for qid, hits in recorded.items():
        assert list(run[qid]) == list(hits), qid
        np.testing.assert_allclose(list(run[qid].values()), list(hits.values()), atol=1e-5)
