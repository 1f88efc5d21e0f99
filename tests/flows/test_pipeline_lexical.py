"""The eval flow with BM25 (no neural encoder) and with fused runs: the same output files as a model,
per-query scores, resume, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbert_retrieval.cli.app import main
from mbert_retrieval.config import EncoderConfig, EvalConfig, FusionConfig, SuiteSpec
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.flows import evaluate as pipeline
from mbert_retrieval.results.metrics import evaluate
from mbert_retrieval.results.runs import read_run
from mbert_retrieval.retrieval import retrievers
from mbert_retrieval.retrieval.fusion import reciprocal_rank_fusion, weighted_score_fusion

pytest.importorskip("bm25s")

SMALL_SUITE = "name: small\nmetrics: [nDCG@10, R@100, RR@10]\ndatasets:\n  - {name: small}\n"


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SUITE)
    return path


def test_run_eval_with_model_bm25_loads_no_encoder(small_beir: Path, tmp_path: Path, monkeypatch) -> None:
    def no_encoder(*args, **kwargs):
        raise AssertionError("BM25 must not load a neural encoder")

    monkeypatch.setattr(pipeline, "encoder_from_config", no_encoder)
    cfg = EvalConfig(
        suite=SuiteSpec.model_validate({"name": "small", "datasets": [{"name": "small"}]}),
        datasets=["small"],
        data_dir=str(small_beir.parent),
        encoder=EncoderConfig(model="bm25"),
        out=str(tmp_path / "out"),
    )
    results = pipeline.run_eval(cfg, progress=False)
    out = tmp_path / "out"
    assert _files(out) == {
        "results.json",
        "results.md",
        "config.resolved.yaml",
        "runs/small.trec",
        "per_query/small.json",
    }
    assert results["model"] == "bm25" and results["encoder"]["kind"] == "bm25" and results["encoder"]["k1"] == 1.5
    record = results["datasets"]["small"]
    assert record["truncated_documents"] == 0 and record["settings"]["bm25"]["b"] == 0.75
    # q1 "sort list python" -> d1; q2 "read file lines" -> d2 (stemmed: read, file, line)
    run = read_run(out / "runs" / "small.trec")
    assert max(run["q1"], key=run["q1"].get) == "d1" and max(run["q2"], key=run["q2"].get) == "d2"
    per_query = json.loads((out / "per_query" / "small.json").read_text())
    assert set(per_query) == set(cfg.suite.metrics) and set(per_query["nDCG@10"]) == {"q1", "q2"}
    for metric, values in per_query.items():
        assert sum(values.values()) / len(values) == pytest.approx(results["metrics"]["small"][metric])


def test_bm25_cli_presets_resume_and_refusal(small_beir: Path, suite: Path, tmp_path: Path, capsys) -> None:
    base = ["eval", "--suite", str(suite), "--data-dir", str(small_beir.parent), "--no-progress"]
    out = tmp_path / "bm25"
    assert main([*base, "--model", "bm25", "--out", str(out)]) == 0
    assert "| small | test | 2 | 4 |" in capsys.readouterr().out
    before = (out / "runs" / "small.trec").stat().st_mtime_ns
    assert main([*base, "--model", "bm25", "--out", str(out)]) == 0
    assert (out / "runs" / "small.trec").stat().st_mtime_ns == before and "already in" in capsys.readouterr().err
    # other BM25 settings are another "model": refused in the same folder
    assert main([*base, "--model", "bm25", "--bm25-preset", "pyserini", "--out", str(out)]) == 1
    assert "holds results of another model" in capsys.readouterr().err
    other = tmp_path / "pyserini"
    assert main([*base, "--model", "bm25", "--bm25-preset", "pyserini", "--bm25-b", "0.5", "--out", str(other)]) == 0
    encoder = json.loads((other / "results.json").read_text())["encoder"]
    assert (encoder["k1"], encoder["b"]) == (0.9, 0.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "bm25", "--fuse", "bm25,x"], "either --model"),
        ([], "either --model"),
        (["--model", "some/model", "--bm25-k1", "1.2"], "bm25 settings apply only"),
        (["--model", "bm25", "--spec", "faiss-hnsw"], "index spec applies to neural models only"),
        (["--fuse", "bm25"], "at least 2 items"),
        (["--fuse", "bm25,bm25", "--fuse-weights", "1,x"], "--fuse-weights: not a comma-separated list"),
        (["--fuse", "bm25,bm25", "--fuse-weights", "1,2,3"], "3 weights for 2 sources"),
    ],
)
def test_option_errors_are_one_line(small_beir: Path, suite: Path, tmp_path: Path, capsys, args, message) -> None:
    argv = ["eval", "--suite", str(suite), "--data-dir", str(small_beir.parent), "--out", str(tmp_path / "o")]
    assert main([*argv, "--no-progress", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_fusion_of_saved_runs_and_bm25(small_beir: Path, suite: Path, tmp_path: Path, capsys) -> None:
    base = ["eval", "--suite", str(suite), "--data-dir", str(small_beir.parent), "--no-progress"]
    lucene, pyserini = tmp_path / "lucene", tmp_path / "pyserini"
    assert main([*base, "--model", "bm25", "--out", str(lucene)]) == 0
    assert main([*base, "--model", "bm25", "--bm25-preset", "pyserini", "--out", str(pyserini)]) == 0
    runs = [read_run(lucene / "runs" / "small.trec"), read_run(pyserini / "runs" / "small.trec")]

    rrf = tmp_path / "rrf"
    assert main([*base, "--fuse", f"{lucene},{pyserini}", "--rrf-k", "10", "--out", str(rrf)]) == 0
    assert _files(rrf) == {
        "results.json",
        "results.md",
        "config.resolved.yaml",
        "runs/small.trec",
        "per_query/small.json",
    }
    fused = read_run(rrf / "runs" / "small.trec")
    expected = reciprocal_rank_fusion(runs, k=10, top_k=1000)
    assert fused.keys() == expected.keys()
    for qid in expected:
        assert fused[qid] == pytest.approx(expected[qid])
    results = json.loads((rrf / "results.json").read_text())
    assert results["encoder"]["kind"] == "fusion" and results["encoder"]["k"] == 10
    assert [s["source"] for s in results["encoder"]["sources"]] == [str(lucene), str(pyserini)]
    assert results["metrics"]["small"] == pytest.approx(
        evaluate(_qrels(small_beir), expected, ["nDCG@10", "R@100", "RR@10"]).means
    )

    # bm25 computed on the fly, weighted z-score fusion
    weighted = tmp_path / "weighted"
    argv = [*base, "--fuse", f"bm25,{pyserini}", "--fuse-method", "weighted", "--fuse-norm", "zscore"]
    assert main([*argv, "--fuse-weights", "0.25,0.75", "--out", str(weighted)]) == 0
    expected = weighted_score_fusion(runs, weights=[0.25, 0.75], normalisation="zscore", top_k=1000)
    fused = read_run(weighted / "runs" / "small.trec")
    for qid in expected:
        assert fused[qid] == pytest.approx(expected[qid])
    assert json.loads((weighted / "results.json").read_text())["encoder"]["sources"][0]["k1"] == 1.5


def _qrels(folder: Path) -> dict:
    from mbert_retrieval.data.beir import load_qrels

    return load_qrels(folder / "qrels" / "test.tsv")


def test_fusion_source_errors(small_beir: Path, suite: Path, tmp_path: Path, capsys) -> None:
    base = ["eval", "--suite", str(suite), "--data-dir", str(small_beir.parent), "--no-progress"]
    assert main([*base, "--fuse", f"bm25,{tmp_path / 'nothing'}", "--out", str(tmp_path / "f1")]) == 1
    assert "results.json: not found" in capsys.readouterr().err
    train = tmp_path / "train"
    assert main([*base, "--model", "bm25", "--split", "train", "--out", str(train)]) == 0
    assert main([*base, "--fuse", f"bm25,{train}", "--out", str(tmp_path / "f2")]) == 1
    assert "no finished run of dataset 'small'" in capsys.readouterr().err
    with pytest.raises(DataError, match="evaluated on split 'train', not 'test'"):
        retrievers._source_run(
            {
                "source": str(train),
                "results": json.loads((train / "results.json").read_text())
                | {"datasets": {"small": {"split": "train"}}, "metrics": {"small": {}}},
            },
            "small",
            None,
            "test",
        )


def test_fusion_config_validation() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        FusionConfig(sources=["bm25"])
    with pytest.raises(ValueError, match="non-negative"):
        FusionConfig(sources=["bm25", "x"], weights=[1.0, -1.0])


def test_bm25_on_a_hub_suite_with_subsets(tmp_path: Path, capsys) -> None:
    """LongEmbed-style needle data (a local copy of the hub layout): one run and per-query file per
    context length, the dataset's score the mean over lengths."""
    repo = tmp_path / "LongEmbed"
    (repo / "needle").mkdir(parents=True)
    docs, queries, qrels = [], [], []
    for length in (256, 512):
        for i, word in enumerate(["apple", "banana", "cherry"]):
            docs.append({"doc_id": f"d{length}{i}", "text": f"{word} haystack {length}", "context_length": length})
        queries.append({"qid": f"q{length}", "text": "banana" if length == 256 else "cherry", "context_length": length})
        qrels.append({"qid": f"q{length}", "doc_id": f"d{length}1", "context_length": length})  # 512: wrong on purpose
    for name, rows in (("corpus", docs), ("queries", queries), ("qrels", qrels)):
        (repo / "needle" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "le.yaml"
    suite.write_text(
        "name: le\nmetrics: [nDCG@1, nDCG@10]\nmain_metric: nDCG@10\ndatasets:\n"
        f"  - {{name: needle, source: hub, main_metric: nDCG@1, subsets: ['256', '512'], hub: {{repo: {repo}, "
        "revision: 0123456789abcdef0123456789abcdef01234567, format: longembed, config: needle}}\n"
    )
    out = tmp_path / "out"
    argv = ["eval", "--suite", str(suite), "--data-dir", str(tmp_path / "data"), "--model", "bm25", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert {
        "runs/needle/256.trec",
        "runs/needle/512.trec",
        "per_query/needle/256.json",
        "per_query/needle/512.json",
    } <= _files(out)
    results = json.loads((out / "results.json").read_text())
    record = results["datasets"]["needle"]
    assert record["main_metric"] == "nDCG@1" and record["subsets"]["256"]["metrics"]["nDCG@1"] == 1.0
    assert record["subsets"]["512"]["metrics"]["nDCG@1"] == 0.0  # "cherry" finds d5122, the qrels say d5121
    assert results["metrics"]["needle"]["nDCG@1"] == 0.5
    assert json.loads((out / "per_query" / "needle" / "256.json").read_text())["nDCG@1"] == {"q256": 1.0}
