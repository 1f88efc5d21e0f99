"""The ColBERT path: PyLate encoder on a tiny ModernBERT backbone, kind detection, eval end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.types import document_text, snippet
from mbert_retrieval.encoders import detect_kind, load_encoder
from mbert_retrieval.encoders.colbert import ColBERTEncoder
from mbert_retrieval.indexes.manifest import read_manifest
from mbert_retrieval.results.runs import read_run


@pytest.fixture(scope="module")
def colbert(tiny_modernbert: str) -> ColBERTEncoder:
    return ColBERTEncoder(tiny_modernbert, document_length=24, batch_size=8, show_progress=False)


def test_token_vectors(colbert: ColBERTEncoder, tiny_modernbert: str) -> None:
    d = colbert.describe()
    assert (d["kind"], d["dim"], d["query_length"], d["document_length"]) == ("colbert", 128, 32, 24)
    assert d["query_expansion"] is True and d["attn_implementation"] == "sdpa"
    queries = colbert.encode_queries(["sort a list", "x"])
    assert [q.shape for q in queries] == [(32, 128), (32, 128)]  # expanded with [MASK] to query_length
    docs = colbert.encode_documents(["def f(x):\n    return sorted(x)", "word " * 100])
    assert docs[1].shape == (24, 128)  # cut at document_length
    assert docs[0].shape[0] < 24 and docs[0].dtype == np.float32
    for m in (*queries, *docs):
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    assert colbert.count_truncated(["word " * 100, "two words"]) == 1
    plain = ColBERTEncoder(tiny_modernbert, query_expansion=False, show_progress=False)
    assert plain.encode_queries(["sort a list"])[0].shape[0] < 32


def test_random_projection_is_seeded(colbert: ColBERTEncoder, tiny_modernbert: str) -> None:
    again = ColBERTEncoder(tiny_modernbert, document_length=24, show_progress=False)
    assert again.fingerprint() == colbert.fingerprint()
    np.testing.assert_allclose(again.encode_documents(["same text"])[0], colbert.encode_documents(["same text"])[0])
    other = ColBERTEncoder(tiny_modernbert, document_length=24, seed=1, show_progress=False)
    assert other.fingerprint() != colbert.fingerprint()
    before = again.fingerprint()
    again.set_document_length(48)
    assert again.document_length == 48 and again.fingerprint() != before
    with pytest.raises(ConfigError, match="exceeds the model's 512 positions"):
        again.set_document_length(4096)


def test_kind_detection(tmp_path: Path, colbert: ColBERTEncoder, tiny_modernbert: str, minilm_path: str) -> None:
    colbert.save(tmp_path / "ckpt")
    assert detect_kind(str(tmp_path / "ckpt")) == "colbert"
    assert detect_kind(minilm_path) == "dense"
    assert detect_kind(tiny_modernbert) is None  # a plain encoder: the user says which
    loaded = load_encoder(str(tmp_path / "ckpt"), show_progress=False)
    assert loaded.kind == "colbert" and loaded.describe()["document_length"] == 24
    np.testing.assert_allclose(
        loaded.encode_documents(["same text"])[0], colbert.encode_documents(["same text"])[0], atol=1e-6
    )
    with pytest.raises(ConfigError, match="query_length applies to ColBERT models only"):
        load_encoder(minilm_path, "dense", query_length=16)


@pytest.fixture
def cosqa_suite(tmp_path: Path, data_dir: Path) -> Path:
    suite = tmp_path / "code.yaml"
    suite.write_text("name: code\ndatasets:\n  - {name: cosqa, folder: cosqa-dev, document_length: 64}\n")
    return suite


def test_eval_colbert_exact_and_plaid(
    tmp_path: Path, data_dir: Path, cosqa_suite: Path, tiny_modernbert: str, capsys, monkeypatch
) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from mbert_retrieval.data.beir import load_qrels

    fast_plaid = tmp_path / "plaid-small.yaml"
    fast_plaid.write_text("name: plaid-small\nindex: {kind: plaid, nbits: 8, n_full_scores: 1024}\n")
    argv = ["eval", "--suite", str(cosqa_suite), "--data-dir", str(data_dir), "--model", tiny_modernbert]
    argv += ["--kind", "colbert", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--top-k", "100"]
    qrels = load_qrels(data_dir / "cosqa-dev" / "qrels" / "test.tsv")
    ndcg = {}
    for name, spec in (("exact", "exact-maxsim"), ("plaid", str(fast_plaid))):
        out = tmp_path / name
        assert main([*argv, "--spec", spec, "--out", str(out)]) == 0
        results = json.loads((out / "results.json").read_text())
        record = results["datasets"]["cosqa"]
        assert record["index"] == ("exact-maxsim" if name == "exact" else "plaid")
        assert record["max_seq_length"] == 64  # the dataset's document_length reached the encoder
        assert results["encoder"]["kind"] == "colbert"
        ndcg[name] = results["metrics"]["cosqa"]["nDCG@10"]
        run = read_run(out / "runs" / "cosqa.trec")
        assert len(run) == 313
        if name == "exact":
            assert all(len(hits) == 100 for hits in run.values())
        else:  # PLAID returns at most k: only documents reached through the probed centroids
            assert all(10 <= len(hits) <= 100 for hits in run.values())
        scored = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
        assert abs(sum(v["ndcg_cut_10"] for v in scored.values()) / len(scored) - ndcg[name]) < 1e-6
    # eval's default (plaid-auto): on 552 documents and 313 queries, exact MaxSim is estimated faster than
    # building PLAID, so it is used, said and recorded; the same run as the exact-maxsim spec
    from mbert_retrieval.indexes.plaid import PlaidIndex

    monkeypatch.setattr(PlaidIndex, "_may_choose_exact", lambda self: self.spec.exact_if_faster)  # a GPU too
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    assert "exact MaxSim (estimated" in capsys.readouterr().err
    record = json.loads((tmp_path / "default" / "results.json").read_text())["datasets"]["cosqa"]
    assert (record["index"], record["index_backend"]) == ("plaid", "exact-maxsim")
    assert read_run(tmp_path / "default" / "runs" / "cosqa.trec") == read_run(
        tmp_path / "exact" / "runs" / "cosqa.trec"
    )
    manifest = read_manifest(tmp_path / "plaid" / "indices" / "cosqa", kind="plaid")
    assert manifest["n_docs"] == 552 and manifest["encoder"]["kind"] == "colbert"
    assert set(manifest["versions"]) >= {"fast-plaid", "sentence-transformers", "torch"}
    assert "pylate" not in manifest["versions"]
    # the saved PLAID index is searchable with the encoder its manifest records, and no other
    from mbert_retrieval.retrieval.search import SearchIndex

    index_dir = tmp_path / "plaid" / "indices" / "cosqa"
    with SearchIndex.load(index_dir) as saved:
        hits = saved.search(["python sort a dictionary by value"], k=5)[0]
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5] and all(h.id.startswith("c") for h in hits)
        assert saved.encoder.describe()["document_length"] == 64
        # eval writes the snippets, in the index's document order
        rows = map(json.loads, (data_dir / "cosqa-dev" / "corpus.jsonl").open(encoding="utf-8"))
        text_of = {r["_id"]: document_text(r.get("title"), r["text"]) for r in rows}
        assert [h.snippet for h in hits] == [snippet(text_of[h.id]) for h in hits]
    # `index info` shows it as it shows a built index: the spec, the corpus, the build time
    assert manifest["spec_name"] == "plaid-small" and manifest["build"]["by"] == "eval"
    capsys.readouterr()
    assert main(["index", "info", str(index_dir)]) == 0
    info = capsys.readouterr().out
    assert "(plaid-small)" in info and "None" not in info and "cosqa-dev" in info, info
    with pytest.raises(ConfigError, match="index was built with encoder"):
        SearchIndex.load(index_dir, encoder=ColBERTEncoder(tiny_modernbert, seed=1, show_progress=False))
    # the embedding cache is shared: PLAID reused the token vectors exact MaxSim computed
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert ndcg["exact"] > 0 and abs(ndcg["plaid"] - ndcg["exact"]) < 0.05, ndcg


def test_faiss_index_refused_for_colbert(
    tmp_path: Path, data_dir: Path, cosqa_suite: Path, tiny_modernbert: str, capsys
) -> None:
    argv = ["eval", "--suite", str(cosqa_suite), "--data-dir", str(data_dir), "--model", tiny_modernbert]
    assert (
        main([*argv, "--kind", "colbert", "--spec", "faiss-hnsw", "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    )
    assert "a ColBERT encoder needs one of" in capsys.readouterr().err
