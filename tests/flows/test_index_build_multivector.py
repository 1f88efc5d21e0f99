"""`index build` with multi-vector specs (PLAID, Voyager, exact MaxSim) and a ColBERT model (the tiny
ModernBERT with a seeded projection): exactness against a numpy MaxSim, PLAID against exact, resume
after a kill, atomicity, search through the CLI and the API, and the errors for mismatched kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_index_build import Counting, make_docs, write_jsonl

from mbert_retrieval.cli.app import main
from mbert_retrieval.config import EncoderConfig
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.encoders import encoder_from_config
from mbert_retrieval.flows.index_build import build_index
from mbert_retrieval.retrieval.search import SearchIndex

QUERIES = ["sorting lists with a loop", "reading files by path", "parsing json strings", "unit tests for a module"]


@pytest.fixture(scope="module")
def colbert(tiny_modernbert: str):
    cfg = EncoderConfig(model=tiny_modernbert, kind="colbert", batch_size=8, document_length=48, query_length=16)
    return encoder_from_config(cfg, progress=False)


def naive_maxsim(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    """Sum over query tokens of the best dot product with any document token: ``[n_queries, n_docs]``."""
    return np.array([[float((q @ d.T).max(axis=1).sum()) for d in docs] for q in queries])


def test_plaid_and_exact_through_the_cli_agree_with_brute_force(
    tmp_path: Path, tiny_modernbert: str, colbert, capsys: pytest.CaptureFixture
) -> None:
    docs = make_docs(120)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    common = ["--model", tiny_modernbert, "--kind", "colbert", "--corpus", str(corpus), "--no-progress"]
    common += ["--document-length", "48", "--query-length", "16", "--batch-size", "8"]
    for spec in ("plaid", "voyager", "exact-maxsim"):
        assert main(["index", "build", *common, "--spec", spec, "--out", str(tmp_path / spec)]) == 0
        out, err = capsys.readouterr()
        assert f"built {spec} index of 120 documents (128-dim)" in out
        assert f"{corpus}: 0 of 120 documents exceed 48 tokens and are truncated to 48" in err  # as eval says
        manifest = json.loads((tmp_path / spec / "manifest.json").read_text())
        assert manifest["build"]["truncated_documents"] == 0
        assert (manifest["kind"], manifest["n_docs"], manifest["encoder"]["kind"]) == (spec, 120, "colbert")
    assert not (tmp_path / "plaid.partial").exists()  # the token-vector shards are removed after success

    truth = naive_maxsim(
        colbert.encode_queries(QUERIES), colbert.encode_documents([d["title"] + " " + d["text"] for d in docs])
    )
    exact = SearchIndex.load(tmp_path / "exact-maxsim").search(QUERIES, k=10)
    plaid = SearchIndex.load(tmp_path / "plaid").search(QUERIES, k=10)
    voyager = SearchIndex.load(tmp_path / "voyager").search(QUERIES, k=10)
    assert [hits[0].id for hits in voyager] == [hits[0].id for hits in exact]  # HNSW candidates, exact re-rank
    overlap = []
    for row, (e_hits, p_hits) in enumerate(zip(exact, plaid, strict=True)):
        top = np.argsort(-truth[row], kind="stable")[:10]
        # fp16 token storage: scores within 1e-2 of fp32; the top-10 sets equal up to near-ties
        np.testing.assert_allclose([h.score for h in e_hits], truth[row, top], atol=1e-2)
        assert e_hits[0].id == docs[top[0]]["_id"] and e_hits[0].snippet.startswith(docs[top[0]]["title"])
        overlap.append(len({h.id for h in e_hits} & {h.id for h in p_hits}) / 10)
    assert np.mean(overlap) >= 0.8, overlap  # PLAID is approximate; on 120 documents it should find most

    assert main(["search", "--index-dir", str(tmp_path / "plaid"), "-k", "3", "--json", QUERIES[0]]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["id"] == plaid[0][0].id
    assert main(["index", "info", str(tmp_path / "plaid")]) == 0
    assert "plaid" in capsys.readouterr().out
    assert main(["index", "add", str(tmp_path / "plaid"), "--corpus", str(corpus)]) == 1
    assert "`index add` handles FAISS indices" in capsys.readouterr().err


def test_killed_multivector_build_resumes_and_matches_an_uninterrupted_one(
    tmp_path: Path, colbert, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", make_docs(23))
    real = colbert.encode_documents
    kw = {"encoder": colbert, "shard_size": 5, "progress": False}

    monkeypatch.setattr(colbert, "encode_documents", Counting(real, fail_after=2))
    with pytest.raises(KeyboardInterrupt):
        build_index(None, corpus, "exact-maxsim", tmp_path / "idx", **kw)
    assert not (tmp_path / "idx").exists()
    assert not list(tmp_path.glob(".idx.tmp-*"))  # the staging copy is gone
    assert len(list((tmp_path / "idx.partial").glob("*/shard-*.npz"))) == 2

    resumed = Counting(real)
    monkeypatch.setattr(colbert, "encode_documents", resumed)
    result = build_index(None, corpus, "exact-maxsim", tmp_path / "idx", **kw)
    assert resumed.calls == 3 and (result.encoded_shards, result.reused_shards) == (3, 2)
    assert not (tmp_path / "idx.partial").exists()

    monkeypatch.setattr(colbert, "encode_documents", real)
    build_index(None, corpus, "exact-maxsim", tmp_path / "whole", **kw)
    for name in ("tokens.npy", "offsets.npy", "doc_ids.txt", "snippets.jsonl"):
        assert (tmp_path / "idx" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name

    with pytest.raises(Exception, match="already exists; pass --overwrite"):
        build_index(None, corpus, "exact-maxsim", tmp_path / "idx", **kw)


def test_model_and_spec_kinds_must_match(tmp_path: Path, tiny_modernbert: str, minilm_path: str, colbert) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", make_docs(8))
    with pytest.raises(ConfigError, match="single-vector model: use a FAISS spec, a ColBERT model, or --kind colbert"):
        build_index(minilm_path, corpus, "plaid", tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="a ColBERT model needs a plaid, voyager or exact-maxsim spec"):
        build_index(tiny_modernbert, corpus, "faiss-flat", tmp_path / "b", kind="colbert", progress=False)
    with pytest.raises(ConfigError, match="use a plaid, voyager or exact-maxsim spec for it"):
        build_index(None, corpus, "faiss-flat", tmp_path / "c", encoder=colbert, progress=False)
    assert not any((tmp_path / n).exists() for n in "abc")
