"""`index build` / `index add` with the tiny ModernBERT: exactness, resume, atomicity, manifest, add/replace."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.config import EncoderConfig, FaissSpec
from mbert_retrieval.core.errors import ConfigError, DataError, OutputExistsError
from mbert_retrieval.encoders import encoder_from_config
from mbert_retrieval.flows.index_build import add_documents, build_index
from mbert_retrieval.indexes.faiss_index import FaissIndex
from mbert_retrieval.retrieval.search import SearchIndex

TOPICS = ["sorting lists", "reading files", "parsing json", "network sockets", "regular expressions", "unit tests"]
WORDS = ["python", "function", "class", "loop", "error", "module", "string", "value", "index", "path"]


def make_docs(n: int, start: int = 0, prefix: str = "d") -> list[dict]:
    return [
        {
            "_id": f"{prefix}{i}",
            "title": TOPICS[i % len(TOPICS)].title(),
            "text": f"Document {i} explains {TOPICS[i % 6]} with the {WORDS[i % 10]} and {WORDS[(i * 7) % 10]}.",
        }
        for i in range(start, start + n)
    ]


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoder(tiny_modernbert: str):
    return encoder_from_config(EncoderConfig(model=tiny_modernbert, batch_size=8), progress=False)


class Counting:
    """Wraps encode_documents: counts calls, optionally raises after ``fail_after`` of them."""

    def __init__(self, fn, fail_after: int | None = None) -> None:
        self.fn, self.fail_after, self.calls = fn, fail_after, 0

    def __call__(self, texts, desc="encode documents"):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # the user's Ctrl-C, or a killed job
        self.calls += 1
        return self.fn(texts, desc)


def folder_state(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.md5(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()}


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_flat_build_then_search_equals_exact_brute_force(tmp_path: Path, encoder, tiny_modernbert: str) -> None:
    docs = make_docs(23)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    out = tmp_path / "idx"
    result = build_index(tiny_modernbert, corpus, "faiss-flat", out, batch_size=8, shard_size=5, progress=False)
    assert (result.n_docs, result.dim, result.factory, result.encoded_shards) == (23, encoder.dim, "Flat", 5)
    assert sorted(p.name for p in out.iterdir()) == [
        "doc_ids.txt",
        "index.faiss",
        "manifest.json",
        "snippets.jsonl",
        "snippets.offsets.npy",
    ]
    assert siblings(out) == ["corpus.jsonl", "idx"]  # no work folder or temporary copy left behind

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "faiss" and manifest["spec_name"] == "faiss-flat" and manifest["n_docs"] == 23
    assert manifest["dim"] == encoder.dim and manifest["encoder"]["fingerprint"] == encoder.fingerprint()
    assert manifest["encoder_load"]["model"] == str(Path(tiny_modernbert).resolve())
    assert manifest["files"]["doc_ids"] == "doc_ids.txt"
    assert {"torch", "faiss-cpu", "sentence-transformers"} <= set(manifest["versions"])
    assert manifest["build"]["shard_size"] == 5 and manifest["build"]["n_shards"] == 5
    assert set(manifest["build"]["seconds"]) == {"encode", "train", "add", "write", "total"}
    assert "created" in manifest

    texts = [f"{d['title']} {d['text']}" for d in docs]
    exact = encoder.encode_documents(texts)
    queries = ["reading files with python", "json parsing error", "unit tests for a class"]
    q = encoder.encode_queries(queries)
    with SearchIndex.load(out) as index:  # the encoder comes from the manifest
        assert index.doc_ids == [d["_id"] for d in docs]
        np.testing.assert_allclose(index.index.vectors(), exact, atol=1e-5)
        results = index.search(queries, k=7)
        assert index.encoder.fingerprint() == encoder.fingerprint()
    scores = q @ exact.T
    for row, hits in enumerate(results):
        top = np.argsort(-scores[row], kind="stable")[:7]
        assert [h.id for h in hits] == [docs[j]["_id"] for j in top]
        np.testing.assert_allclose([h.score for h in hits], scores[row, top], atol=1e-5)
        assert [h.rank for h in hits] == list(range(1, 8))
        assert hits[0].snippet == texts[top[0]]


def test_killed_build_resumes_without_reencoding(tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = make_docs(23)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    real = encoder.encode_documents
    kw = {"encoder": encoder, "shard_size": 5, "progress": False}

    failing = Counting(real, fail_after=2)
    monkeypatch.setattr(encoder, "encode_documents", failing)
    with pytest.raises(KeyboardInterrupt):
        build_index(None, corpus, "faiss-flat", tmp_path / "idx", **kw)
    assert not (tmp_path / "idx").exists()
    assert len(list((tmp_path / "idx.partial" / "shards").glob("*/*/shard-*.npy"))) == 2

    resumed = Counting(real)
    monkeypatch.setattr(encoder, "encode_documents", resumed)
    result = build_index(None, corpus, "faiss-flat", tmp_path / "idx", **kw)
    assert resumed.calls == 3 and (result.encoded_shards, result.reused_shards) == (3, 2)
    assert not (tmp_path / "idx.partial").exists()

    whole = Counting(real)
    monkeypatch.setattr(encoder, "encode_documents", whole)
    build_index(None, corpus, "faiss-flat", tmp_path / "whole", **kw)
    assert whole.calls == 5
    a, b = FaissIndex.load(tmp_path / "idx"), FaissIndex.load(tmp_path / "whole")
    assert a.doc_ids == b.doc_ids == [d["_id"] for d in docs]
    np.testing.assert_array_equal(a.vectors(), b.vectors())
    assert (tmp_path / "idx" / "snippets.jsonl").read_bytes() == (tmp_path / "whole" / "snippets.jsonl").read_bytes()


def test_existing_index_untouched_until_the_new_one_is_complete(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", make_docs(12))
    out = tmp_path / "idx"
    build_index(None, corpus, "faiss-flat", out, encoder=encoder, progress=False)
    before = folder_state(out)

    with pytest.raises(OutputExistsError, match=r"idx already exists; pass --overwrite"):
        build_index(None, corpus, "faiss-flat", out, encoder=encoder, progress=False)
    blank = write_jsonl(tmp_path / "blank.jsonl", [*make_docs(3), {"_id": "empty", "text": " "}])
    with pytest.raises(DataError, match=r"blank\.jsonl:4: field 'text': document 'empty' has a blank text"):
        build_index(None, blank, "faiss-flat", out, encoder=encoder, overwrite=True, progress=False)
    monkeypatch.setattr(encoder, "encode_documents", Counting(encoder.encode_documents, fail_after=1))
    bigger = write_jsonl(tmp_path / "bigger.jsonl", make_docs(20))
    with pytest.raises(KeyboardInterrupt):
        build_index(None, bigger, "faiss-flat", out, encoder=encoder, overwrite=True, shard_size=5, progress=False)
    assert folder_state(out) == before
    monkeypatch.undo()

    result = build_index(None, bigger, "faiss-flat", out, encoder=encoder, overwrite=True, progress=False)
    assert result.n_docs == 20 and FaissIndex.load(out).doc_ids == [d["_id"] for d in make_docs(20)]
    assert siblings(out) == ["bigger.jsonl", "blank.jsonl", "corpus.jsonl", "idx"]

    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("not an index")
    with pytest.raises(OutputExistsError, match=r"notes is not an index folder \(no manifest\.json\)"):
        build_index(None, corpus, "faiss-flat", other, encoder=encoder, overwrite=True, progress=False)


def test_quantised_kinds_train_on_a_sample_across_shards(tmp_path: Path, encoder) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", make_docs(40))
    flat = build_index(None, corpus, FaissSpec(), tmp_path / "flat", encoder=encoder, shard_size=7, progress=False)
    assert flat.n_docs == 40
    queries = ["reading files", "json parsing", "network sockets in python"]
    with SearchIndex.load(tmp_path / "flat", encoder=encoder) as exact:
        truth = exact.search(queries, k=5)
    for spec in (FaissSpec(type="ivf-flat", nlist=4, nprobe=4, train_sample=30), FaissSpec(type="sq", sq_type="fp16")):
        out = tmp_path / spec.type
        build_index(None, corpus, spec, out, encoder=encoder, shard_size=7, progress=False)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["build"]["train_vectors"] == min(40, spec.train_sample)
        with SearchIndex.load(out, encoder=encoder) as index:
            got = index.search(queries, k=5)
        for t, g in zip(truth, got, strict=True):
            assert [h.id for h in t] == [h.id for h in g]  # nprobe = nlist and fp16: the exact neighbours


def test_spec_errors_come_before_any_encoding(tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", make_docs(10))
    never = Counting(encoder.encode_documents, fail_after=0)
    monkeypatch.setattr(encoder, "encode_documents", never)
    with pytest.raises(ConfigError, match=r"ivf-flat \(IVF1024,Flat\) needs at least 1024 training vectors"):
        build_index(None, corpus, "faiss-ivf-flat", tmp_path / "ivf", encoder=encoder, progress=False)
    with pytest.raises(ConfigError, match=r"m=5 sub-quantisers must divide the dimension"):
        build_index(None, corpus, FaissSpec(type="ivf-pq", nlist=2, m=5, nbits=2), tmp_path / "pq", encoder=encoder)
    plaid = tmp_path / "plaid.yaml"
    plaid.write_text("name: my-plaid\nindex:\n  kind: plaid\n  nbits: 2\n")
    with pytest.raises(ConfigError, match=r"'my-plaid' is a plaid index over token vectors; .* is a dense encoder"):
        build_index(None, corpus, plaid, tmp_path / "plaid", encoder=encoder)
    with pytest.raises(ConfigError, match="unknown index spec 'nope'"):
        build_index(None, corpus, "nope", tmp_path / "x", encoder=encoder)
    assert never.calls == 0 and not list(tmp_path.glob("*.partial"))


def test_cli_build_reports_shards_and_truncated_documents(
    tmp_path: Path, tiny_modernbert: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`index build` says how many documents the encoder cuts (as eval does), and counts in the singular."""
    import logging

    from mbert_retrieval.cli.app import main

    package_logger = logging.getLogger("mbert_retrieval")  # main's stderr handler is not left to later tests
    monkeypatch.setattr(package_logger, "handlers", [])
    monkeypatch.setattr(package_logger, "propagate", package_logger.propagate)

    long = {"_id": "long", "title": "", "text": " ".join(WORDS * 30)}  # 300 words: far over 64 tokens
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*make_docs(5), long])
    argv = ["index", "build", "--model", tiny_modernbert, "--corpus", str(corpus), "--spec", "faiss-flat"]
    assert main([*argv, "--out", str(tmp_path / "idx"), "--max-seq-length", "64", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert f"{corpus}: 1 of 6 documents exceed 64 tokens and are truncated to 64" in err
    assert "built Flat index of 6 documents (64-dim)" in out and "(1 shard encoded)" in out
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["build"]["truncated_documents"] == 1


def test_add_appends_and_replaces(tmp_path: Path, encoder, tiny_modernbert: str) -> None:
    base = make_docs(10)
    build_index(
        tiny_modernbert, write_jsonl(tmp_path / "a.jsonl", base), "faiss-flat", tmp_path / "idx", progress=False
    )
    before = folder_state(tmp_path / "idx")

    dup = make_docs(3, start=8)  # d8, d9 exist; d10 is new
    with pytest.raises(DataError, match=r"2 document ids are already in the index \('d8', 'd9'\); pass --replace"):
        add_documents(tmp_path / "idx", write_jsonl(tmp_path / "dup.jsonl", dup), progress=False)
    with pytest.raises(DataError, match=r": 1 document id is already in the index \('d9'\); pass --replace"):
        add_documents(tmp_path / "idx", write_jsonl(tmp_path / "dup.jsonl", make_docs(2, start=9)), progress=False)
    assert folder_state(tmp_path / "idx") == before

    new = make_docs(4, start=10)
    result = add_documents(tmp_path / "idx", write_jsonl(tmp_path / "new.jsonl", new), progress=False)
    assert (result.added, result.replaced, result.n_docs) == (4, 0, 14)
    # the same as building over all 14 documents at once
    build_index(None, write_jsonl(tmp_path / "all.jsonl", base + new), "faiss-flat", tmp_path / "all", encoder=encoder)
    a, b = FaissIndex.load(tmp_path / "idx"), FaissIndex.load(tmp_path / "all")
    assert a.doc_ids == b.doc_ids
    np.testing.assert_allclose(a.vectors(), b.vectors(), atol=1e-6)
    assert (tmp_path / "idx" / "snippets.jsonl").read_bytes() == (tmp_path / "all" / "snippets.jsonl").read_bytes()

    changed = [{"_id": "d3", "title": "Changed", "text": "An entirely new text about cooking pasta."}]
    result = add_documents(tmp_path / "idx", write_jsonl(tmp_path / "c.jsonl", changed), replace=True, progress=False)
    assert (result.added, result.replaced, result.n_docs) == (0, 1, 14)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["n_docs"] == 14 and [h["op"] for h in manifest["history"]] == ["add", "add"]
    assert manifest["history"][-1]["replaced"] == 1 and manifest["encoder"]["fingerprint"] == encoder.fingerprint()
    with SearchIndex.load(tmp_path / "idx") as index:
        assert index.doc_ids[-1] == "d3" and index.doc_ids.count("d3") == 1
        np.testing.assert_allclose(
            index.index.vectors(13, 14),
            encoder.encode_documents(["Changed An entirely new text about cooking pasta."]),
            atol=1e-5,
        )
        (hits,) = index.search(["Changed An entirely new text about cooking pasta."], k=1)
        assert hits[0].id == "d3" and hits[0].snippet.startswith("Changed An entirely new")
    assert siblings(tmp_path / "idx") == ["a.jsonl", "all", "all.jsonl", "c.jsonl", "dup.jsonl", "idx", "new.jsonl"]


def test_add_refuses_replace_in_hnsw_and_another_encoder(tmp_path: Path, encoder, tiny_modernbert: str) -> None:
    corpus = write_jsonl(tmp_path / "a.jsonl", make_docs(8))
    build_index(None, corpus, "faiss-hnsw", tmp_path / "hnsw", encoder=encoder, progress=False)
    with pytest.raises(ConfigError, match="cannot replace documents in an HNSW index"):
        add_documents(tmp_path / "hnsw", corpus, replace=True, encoder=encoder)
    # appending new ids to HNSW is fine
    assert (
        add_documents(tmp_path / "hnsw", write_jsonl(tmp_path / "b.jsonl", make_docs(2, 8)), encoder=encoder).n_docs
        == 10
    )

    other = encoder_from_config(EncoderConfig(model=tiny_modernbert, document_prompt="passage: "), progress=False)
    with pytest.raises(ConfigError, match=r"was built with encoder .* differs in weights or settings"):
        add_documents(tmp_path / "hnsw", write_jsonl(tmp_path / "c.jsonl", make_docs(1, 20)), encoder=other)


@pytest.mark.parametrize("kind", ["flat", "ivf-flat", "ivf-pq", "sq"])
def test_faiss_remove_keeps_ids_and_vectors_aligned(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    spec = FaissSpec(type=kind, nlist=8, nprobe=8, m=4, nbits=4)
    index = FaissIndex(16, spec)
    ids = [f"d{i}" for i in range(600)]
    index.add(ids, x)
    assert index.remove(["d0", "d17", "d599", "unknown"]) == 3
    kept = [i for i in range(600) if i not in (0, 17, 599)]
    assert index.doc_ids == [ids[i] for i in kept]
    index.add(["new"], x[17:18])  # labels continue after the renumbered ones
    run = index.search(["q"], x[kept[:1]], 1)
    assert list(run["q"]) == [ids[kept[0]]]
    run = index.search(["q"], x[17:18], 1)
    assert list(run["q"]) == ["new"]
    if kind in ("flat", "sq"):
        np.testing.assert_allclose(index.vectors(0, 5), x[kept[:5]], atol=1e-2)
    hnsw = FaissIndex(16, FaissSpec(type="hnsw"))
    hnsw.add(ids[:5], x[:5])
    with pytest.raises(ConfigError, match="cannot remove vectors from an HNSW index"):
        hnsw.remove(["d1"])


def test_stale_work_is_discarded_and_an_interrupted_swap_is_undone(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = encoder.encode_documents
    monkeypatch.setattr(encoder, "encode_documents", Counting(real, fail_after=1))
    with pytest.raises(KeyboardInterrupt):
        build_index(
            None,
            write_jsonl(tmp_path / "a.jsonl", make_docs(12)),
            "faiss-flat",
            tmp_path / "idx",
            encoder=encoder,
            shard_size=4,
        )
    again = Counting(real)
    monkeypatch.setattr(encoder, "encode_documents", again)
    other = write_jsonl(tmp_path / "b.jsonl", make_docs(9))  # another corpus into the same --out
    build_index(None, other, "faiss-flat", tmp_path / "idx", encoder=encoder, shard_size=4, progress=False)
    assert again.calls == 3 and "holds an unfinished build with another corpus or model: discarded" in caplog.text

    # a process killed between the two renames of a swap: the old index is put back on next use
    (tmp_path / "idx").rename(tmp_path / ".idx.previous")
    with SearchIndex.load(tmp_path / "idx", encoder=encoder) as index:
        assert len(index) == 9
    assert not (tmp_path / ".idx.previous").exists()
