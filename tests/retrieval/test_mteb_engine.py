"""MTEB interop: our encoders inside ``mteb.evaluate``, and ``eval --engine mteb`` against our engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import write_beir

from mbert_retrieval.cli.app import main

pytest.importorskip("mteb")

TOPICS = {
    "sort": ["Sorting a list of numbers in ascending order with a stable algorithm.", "Merge sort and quicksort."],
    "file": ["Reading a text file line by line and closing it.", "Writing bytes to a file on disk."],
    "net": ["Opening a TCP socket and sending data to a server.", "Network connections time out after a while."],
    "regex": ["Regular expressions match patterns in strings.", "Escaping special characters in a pattern."],
    "time": ["Parsing dates and formatting timestamps in UTC.", "Time zones and daylight saving changes."],
    "json": ["Serialising a dictionary to JSON text.", "Decoding JSON into Python objects."],
    "thread": ["Threads share memory and need locks.", "A lock prevents two threads from racing."],
    "test": ["Unit tests assert the expected behaviour.", "Fixtures prepare the state a test needs."],
    "http": ["Sending an HTTP GET request and reading the response.", "HTTP status codes and headers."],
    "zip": ["Compressing files into a zip archive.", "Gzip streams compress data on the fly."],
}
QUERIES = {
    "sort": "how do I order values in a list",
    "file": "read lines of a file",
    "net": "send data over a socket connection",
    "regex": "pattern matching on text",
    "time": "convert a timestamp to a date string",
    "json": "turn a dict into json",
    "thread": "avoid race conditions between threads",
    "test": "write unit tests",
    "http": "make a web request",
    "zip": "compress a folder",
}


def _engines_data(root: Path) -> Path:
    """40 short documents on 10 topics; each query judges one document 2, another 1, a third 0, so a
    retriever that confuses the topic's documents gets an nDCG@10 below 1."""
    corpus, qrels = [], []
    for t, (a, b) in TOPICS.items():
        corpus += [
            {"_id": f"{t}-a", "title": t.upper(), "text": a},
            {"_id": f"{t}-b", "title": "", "text": b},
            {"_id": f"{t}-c", "title": "", "text": f"{a} {b}"},
            {"_id": f"{t}-d", "title": "Misc", "text": f"Unrelated notes mentioning {t} once."},
        ]
        qrels += [(f"q-{t}", f"{t}-b", 2), (f"q-{t}", f"{t}-d", 1), (f"q-{t}", f"{t}-a", 0)]
    queries = [{"_id": f"q-{t}", "text": q} for t, q in QUERIES.items()]
    write_beir(root / "topics", corpus, queries, {"test": qrels})
    suite = root / "topics.yaml"
    suite.write_text(
        "name: topics\nmetrics: [nDCG@10, R@100, RR@10, MAP@100, P@5]\ntop_k: 100\ndatasets:\n  - {name: topics}\n",
        encoding="utf-8",
    )
    return suite


def _eval(suite: str | Path, data: Path, model: str, out: Path, *extra: str) -> dict:
    args = ["-q", "eval", "--suite", str(suite), "--data-dir", str(data), "--model", model, "--out", str(out)]
    rc = main([*args, "--no-progress", *extra])
    assert rc == 0
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_engines_agree_on_a_local_beir_folder_with_minilm(tmp_path: Path, minilm_path: str) -> None:
    suite = _engines_data(tmp_path)
    ours = _eval(suite, tmp_path, minilm_path, tmp_path / "ours")
    theirs = _eval(suite, tmp_path, minilm_path, tmp_path / "mteb", "--engine", "mteb")
    assert theirs["engine"] == "mteb"
    assert ours.get("engine", "ours") == "ours"
    a, b = ours["metrics"]["topics"], theirs["metrics"]["topics"]
    assert 0.2 < a["nDCG@10"] < 0.95  # not a trivial ranking
    for metric in ("nDCG@10", "R@100", "RR@10", "MAP@100", "P@5"):
        assert b[metric] == pytest.approx(a[metric], abs=1e-3), metric
    # the MTEB engine writes our schema: runs, per-query values (MTEB's own), config, record
    record = theirs["datasets"]["topics"]
    assert record["n_queries"] == 10 and record["n_docs"] == 40 and record["index"] == "mteb-exact"
    assert record["seconds"]["total"] > 0
    per_query = json.loads((tmp_path / "mteb" / record["per_query"]).read_text(encoding="utf-8"))
    assert set(per_query) == {"nDCG@10", "R@100", "RR@10", "MAP@100", "P@5"}
    mean = sum(per_query["nDCG@10"].values()) / len(per_query["nDCG@10"])
    assert mean == pytest.approx(b["nDCG@10"], abs=1e-5)  # MTEB rounds its means to 5 decimals
    ours_pq = json.loads((tmp_path / "ours" / "per_query" / "topics.json").read_text(encoding="utf-8"))
    for qid, value in ours_pq["nDCG@10"].items():
        assert per_query["nDCG@10"][qid] == pytest.approx(value, abs=1e-6), qid
    trec = (tmp_path / "mteb" / "runs" / "topics.trec").read_text(encoding="utf-8").splitlines()
    assert len(trec) == 10 * 40 and trec[0].split()[0].startswith("q-")
    assert theirs["versions"]["mteb"]
    # the same --out again: finished datasets are skipped; the other engine's folder is refused
    again = _eval(suite, tmp_path, minilm_path, tmp_path / "mteb", "--engine", "mteb")
    assert again["datasets"]["topics"]["finished"] == record["finished"]
    args = ["-q", "eval", "--suite", str(suite), "--data-dir", str(tmp_path), "--model", minilm_path]
    assert main([*args, "--out", str(tmp_path / "ours"), "--no-progress", "--engine", "mteb"]) == 1
    # and the other way round: our engine refuses the MTEB engine's folder
    assert main([*args, "--out", str(tmp_path / "mteb"), "--no-progress"]) == 1


def test_mteb_evaluate_runs_our_dense_encoder_unchanged(tmp_path: Path, minilm_path: str) -> None:
    import mteb

    from mbert_retrieval.data import load_beir_folder
    from mbert_retrieval.retrieval.mteb import local_task, to_mteb

    _engines_data(tmp_path)
    model = to_mteb(minilm_path, show_progress=False)
    task = local_task(load_beir_folder(tmp_path / "topics"), top_k=100)
    result = mteb.evaluate(model, task, cache=None, co2_tracker=False, show_progress_bar=False)
    score = result.task_results[0].scores["test"][0]
    assert 0 < score["ndcg_at_10"] < 1 and score["main_score"] == score["ndcg_at_10"]
    assert model.mteb_model_meta.name.startswith("mbert-retrieval/")


def test_colbert_engines_agree_with_exact_maxsim(tmp_path: Path, tiny_modernbert: str, small_beir: Path) -> None:
    spec = tmp_path / "exact32.yaml"
    spec.write_text("name: exact32\nindex: {kind: exact-maxsim, dtype: float32}\n", encoding="utf-8")
    suite = tmp_path / "small.yaml"
    suite.write_text("name: small\ntop_k: 100\ndatasets:\n  - {name: small}\n", encoding="utf-8")
    data = small_beir.parent
    common = ["--kind", "colbert", "--query-length", "16", "--document-length", "64"]
    ours = _eval(suite, data, tiny_modernbert, tmp_path / "ours", *common, "--spec", str(spec))
    theirs = _eval(suite, data, tiny_modernbert, tmp_path / "mteb", *common, "--engine", "mteb")
    assert theirs["index"]["search"] == "MultiVectorWrapper"  # MTEB's wrapper for sentence-transformers' ColBERTs
    assert theirs["encoder"]["fingerprint"] == ours["encoder"]["fingerprint"]
    for metric, value in ours["metrics"]["small"].items():
        assert theirs["metrics"]["small"][metric] == pytest.approx(value, abs=1e-5), metric


def test_to_mteb_gives_mteb_wrappers_set_up_as_our_encoders(minilm_path: str, tiny_modernbert: str) -> None:
    from mteb.models import ModelMeta, MultiVectorWrapper, SentenceTransformerEncoderWrapper
    from mteb.models.model_meta import ScoringFunction

    from mbert_retrieval.encoders.colbert import ColBERTEncoder
    from mbert_retrieval.encoders.dense import DenseEncoder
    from mbert_retrieval.retrieval.mteb import to_mteb

    dense = DenseEncoder(minilm_path, device="cpu", show_progress=False, query_prompt="query: ")
    prompts_before = dict(dense.model.prompts)
    model = to_mteb(dense)
    assert isinstance(model, SentenceTransformerEncoderWrapper) and model.model is dense.model
    assert model.model_prompts == {"query": "query: "}  # ours for every task, not MTEB's per-task ones
    assert dense.model.prompts == prompts_before  # the shared model is left as it was
    meta = model.mteb_model_meta
    assert isinstance(meta, ModelMeta) and meta.name.startswith("mbert-retrieval/")
    assert meta.revision == dense.fingerprint()[:16] and meta.model_type == ["dense"]
    assert meta.framework == ["PyTorch", "Sentence Transformers"]
    assert meta.similarity_fn_name == ScoringFunction.COSINE and meta.embed_dim == 384 and meta.max_tokens == 256

    colbert = ColBERTEncoder(tiny_modernbert, device="cpu", show_progress=False, document_prompt="passage: ")
    model = to_mteb(colbert, name="org/tiny-colbert")
    assert isinstance(model, MultiVectorWrapper) and model.model is colbert.model
    assert model.model_prompts == {"query": "[Q] ", "document": "[D] passage: "}  # marker, then our prompt
    meta = model.mteb_model_meta
    assert meta.name == "org/tiny-colbert" and meta.revision == colbert.fingerprint()[:16]
    assert meta.model_type == ["late-interaction"] and meta.framework == ["PyTorch", "Sentence Transformers"]
    assert meta.similarity_fn_name == ScoringFunction.MAX_SIM and meta.max_tokens == colbert.document_length


def test_mteb_wrappers_run_our_unpadded_forward_where_our_encoders_do(
    tmp_path: Path, tiny_modernbert: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dense: every MTEB encode call runs the unpadded ModernBERT forward. ColBERT with ``[MASK]`` query
    expansion: documents unpadded, queries padded (the expansion is read back), as in ``ColBERTEncoder``."""
    import mteb

    import mbert_retrieval.retrieval.mteb as engine
    from mbert_retrieval.data import load_beir_folder
    from mbert_retrieval.encoders.colbert import ColBERTEncoder
    from mbert_retrieval.encoders.dense import DenseEncoder

    calls: list[bool] = []
    original = engine.unpadded

    def spy(model, enabled=True, **options):
        calls.append(bool(enabled))
        return original(model, enabled=enabled, **options)

    monkeypatch.setattr(engine, "unpadded", spy)
    _engines_data(tmp_path)
    task = engine.local_task(load_beir_folder(tmp_path / "topics"), top_k=100)
    dense = DenseEncoder(tiny_modernbert, device="cpu", show_progress=False)
    colbert = ColBERTEncoder(tiny_modernbert, device="cpu", show_progress=False)
    assert dense.unpadded_path and colbert.query_expansion
    for encoder, expected in ((dense, [True, True]), (colbert, [False, True])):  # queries, then documents
        calls.clear()
        result = mteb.evaluate(engine.to_mteb(encoder), task, cache=None, co2_tracker=False, show_progress_bar=False)
        assert not result.exceptions
        assert calls == expected, encoder.kind


COSQA_CASES = {
    "minilm-dense": ("minilm", ["--query-prompt", "query: "]),
    "modernbert-dense": ("tiny", ["--document-prompt", "code: "]),
    "modernbert-dense-raw": ("tiny", ["--no-normalize"]),
    "modernbert-colbert": ("tiny", ["--kind", "colbert", "--query-prompt", "q: ", "--document-length", "96"]),
    "modernbert-colbert-no-expansion": ("tiny", ["--kind", "colbert", "--no-query-expansion", "--query-length", "24"]),
}


@pytest.mark.parametrize("case", list(COSQA_CASES))
def test_mteb_wrappers_give_our_numbers_on_cosqa(
    case: str, tmp_path: Path, data_dir: Path, minilm_path: str, tiny_modernbert: str
) -> None:
    """MTEB's own wrappers (dense: ``SentenceTransformerEncoderWrapper``; ColBERT: ``MultiVectorWrapper``,
    exact MaxSim) score the 313 CoSQA dev queries as our engine does, per query; the tiny ModernBERT
    runs through the unpadded forward in both engines."""
    which, extra = COSQA_CASES[case]
    model = minilm_path if which == "minilm" else tiny_modernbert
    suite = tmp_path / "code.yaml"
    suite.write_text(
        "name: code\nmetrics: [nDCG@10, R@100, RR@10, MAP@100]\ndatasets:\n  - {name: cosqa, folder: cosqa-dev}\n",
        encoding="utf-8",
    )
    exact32 = tmp_path / "exact32.yaml"  # float32 storage, as MTEB scores
    exact32.write_text("name: exact32\nindex: {kind: exact-maxsim, dtype: float32}\n", encoding="utf-8")
    index = ["--spec", str(exact32)] if "colbert" in extra else []
    ours = _eval(suite, data_dir, model, tmp_path / "ours", "--batch-size", "16", *extra, *index)
    theirs = _eval(suite, data_dir, model, tmp_path / "mteb", "--batch-size", "16", *extra, "--engine", "mteb")
    wrapper = "MultiVectorWrapper" if "colbert" in extra else "SentenceTransformerEncoderWrapper"
    assert theirs["index"]["search"] == wrapper
    assert theirs["encoder"] == ours["encoder"]
    if which == "tiny":
        assert ours["encoder"]["unpadded"]  # the unpadded ModernBERT forward is on (in both engines)
    a, b = ours["metrics"]["cosqa"], theirs["metrics"]["cosqa"]
    assert a["nDCG@10"] > 0.01 if which == "tiny" else a["nDCG@10"] > 0.2
    for metric, value in a.items():
        assert b[metric] == pytest.approx(value, abs=5e-6), metric  # MTEB rounds its means to 5 decimals
    ours_pq = json.loads((tmp_path / "ours" / "per_query" / "cosqa.json").read_text(encoding="utf-8"))
    theirs_pq = json.loads((tmp_path / "mteb" / "per_query" / "cosqa.json").read_text(encoding="utf-8"))
    for metric in ("nDCG@10", "R@100"):
        assert theirs_pq[metric].keys() == ours_pq[metric].keys()
        for qid, value in ours_pq[metric].items():
            assert theirs_pq[metric][qid] == pytest.approx(value, abs=1e-6), (metric, qid)


def test_engine_mteb_refuses_what_it_cannot_do(tmp_path: Path, small_beir: Path, capsys: pytest.CaptureFixture) -> None:
    suite = tmp_path / "small.yaml"
    suite.write_text("name: small\ntop_k: 100\ndatasets:\n  - {name: small}\n", encoding="utf-8")
    base = ["-q", "eval", "--suite", str(suite), "--data-dir", str(small_beir.parent), "--engine", "mteb"]
    assert main([*base, "--model", "bm25", "--out", str(tmp_path / "a")]) == 1
    assert "--engine mteb evaluates a model" in capsys.readouterr().err
    assert main([*base, "--model", "x", "--spec", "faiss-hnsw", "--out", str(tmp_path / "b")]) == 1
    assert "--spec applies to --engine ours" in capsys.readouterr().err


def test_known_mteb_task_names_exist() -> None:
    import mteb

    from mbert_retrieval.retrieval.mteb import MTEB_TASKS

    for name, (task_name, subset) in MTEB_TASKS.items():
        task = mteb.get_task(task_name)
        assert task.metadata.type == "Retrieval", name
        if subset is not None:
            assert subset in task.metadata.hf_subsets, name


@pytest.mark.slow
def test_engines_agree_on_real_scifact_with_minilm(tmp_path: Path, data_dir: Path, minilm_path: str) -> None:
    """The issue's check: MTEB's ``SentenceTransformerEncoderWrapper`` (``--engine mteb``) gives MTEB's published
    0.64508 nDCG@10 on SciFact test, as our engine does, query for query."""
    import time

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    seconds = {}
    for engine, extra in (("ours", ()), ("mteb", ("--engine", "mteb"))):
        t = time.perf_counter()
        found = _eval("beir", data_dir, minilm_path, tmp_path / engine, "--datasets", "scifact", *extra)
        seconds[engine] = time.perf_counter() - t
        ndcg = found["metrics"]["scifact"]["nDCG@10"]
        print(f"SciFact test, {engine} engine: nDCG@10 {ndcg:.5f} in {seconds[engine]:.1f} s")
        assert ndcg == pytest.approx(0.64508, abs=5e-6), engine
    theirs = json.loads((tmp_path / "mteb" / "results.json").read_text(encoding="utf-8"))
    assert theirs["index"]["search"] == "SentenceTransformerEncoderWrapper"
    per_query = {e: json.loads((tmp_path / e / "per_query" / "scifact.json").read_text("utf-8")) for e in seconds}
    assert per_query["mteb"]["nDCG@10"].keys() == per_query["ours"]["nDCG@10"].keys()
    for qid, value in per_query["ours"]["nDCG@10"].items():
        assert per_query["mteb"]["nDCG@10"][qid] == pytest.approx(value, abs=1e-6), qid
