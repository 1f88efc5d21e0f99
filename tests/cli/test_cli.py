"""The eval CLI end to end on real data (CoSQA code search) with a tiny ModernBERT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from mbert_retrieval.cli.app import main
from mbert_retrieval.results.runs import read_run

EXPECTED_FILES = {"results.json", "results.md", "config.resolved.yaml", "runs/cosqa.trec", "per_query/cosqa.json"}


@pytest.fixture
def cosqa_suite(tmp_path: Path, data_dir: Path) -> Path:
    suite = tmp_path / "code.yaml"
    suite.write_text(
        "name: code\nmetrics: [nDCG@10, R@100, RR@10, MAP@100]\ndatasets:\n  - {name: cosqa, folder: cosqa-dev}\n"
    )
    return suite


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "cache" not in p.parts}


def test_eval_end_to_end(tmp_path: Path, data_dir: Path, cosqa_suite: Path, tiny_modernbert: str, capsys) -> None:
    out = tmp_path / "out"
    argv = ["eval", "--suite", str(cosqa_suite), "--data-dir", str(data_dir), "--model", tiny_modernbert]
    assert main([*argv, "--out", str(out), "--batch-size", "16", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "| dataset | split | queries | docs | nDCG@10 | R@100 | RR@10 | MAP@100 |"
    assert "| cosqa | test | 313 | 552 |" in table
    assert _files(out) == EXPECTED_FILES

    results = json.loads((out / "results.json").read_text())
    assert results["suite"] == "code" and results["model"] == tiny_modernbert
    assert set(results["versions"]) >= {"python", "torch", "transformers", "sentence-transformers", "faiss-cpu"}
    record = results["datasets"]["cosqa"]
    assert (record["n_docs"], record["n_queries"], record["split"]) == (552, 313, "test")
    assert record["max_seq_length"] == 512 and record["truncated_documents"] >= 0
    metrics = results["metrics"]["cosqa"]
    assert set(metrics) == {"nDCG@10", "R@100", "RR@10", "MAP@100"}
    assert 0.0 < metrics["nDCG@10"] < 1.0

    # the run file holds top 1000 (here: every one of the 552 documents) per query, in rank order
    run = read_run(out / "runs" / "cosqa.trec")
    assert len(run) == 313 and all(len(hits) == 552 for hits in run.values())
    # anyone can re-score it: pytrec_eval on the file equals results.json to 1e-6
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from mbert_retrieval.data.beir import load_qrels

    qrels = load_qrels(data_dir / "cosqa-dev" / "qrels" / "test.tsv")
    scored = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"}).evaluate(run)
    for ours, trec in [("nDCG@10", "ndcg_cut_10"), ("R@100", "recall_100"), ("MAP@100", "map_cut_100")]:
        mean = sum(v[trec] for v in scored.values()) / len(scored)
        assert abs(mean - metrics[ours]) < 1e-6

    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["encoder"]["model"] == tiny_modernbert and resolved["datasets"] == ["cosqa"]
    assert resolved["suite"]["datasets"][0]["folder"] == "cosqa-dev"

    # a second run into the same folder resumes: nothing is recomputed
    before = (out / "runs" / "cosqa.trec").stat().st_mtime_ns
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert (out / "runs" / "cosqa.trec").stat().st_mtime_ns == before
    assert "already in" in capsys.readouterr().err

    # any FAISS index spec can serve the eval; the cached document embeddings are reused
    hnsw = tmp_path / "hnsw"
    assert main([*argv, "--out", str(hnsw), "--spec", "faiss-hnsw", "--cache-dir", str(out / "cache")]) == 0
    approx = json.loads((hnsw / "results.json").read_text())
    assert approx["index"]["name"] == "faiss-hnsw" and approx["datasets"]["cosqa"]["index"] == "faiss"
    assert approx["datasets"]["cosqa"]["seconds"]["encode_documents"] < record["seconds"]["encode_documents"]
    assert abs(approx["metrics"]["cosqa"]["nDCG@10"] - metrics["nDCG@10"]) < 0.01


def test_other_model_into_same_out_is_refused(
    tmp_path: Path, data_dir: Path, cosqa_suite: Path, tiny_modernbert: str, minilm_path: str, capsys
) -> None:
    out = tmp_path / "out"
    (out).mkdir()
    (out / "results.json").write_text(
        json.dumps({"metrics": {"cosqa": {}}, "encoder": {"fingerprint": "other", "name": "x"}})
    )
    argv = ["eval", "--suite", str(cosqa_suite), "--data-dir", str(data_dir), "--model", tiny_modernbert]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds results of another model" in err and "--overwrite" in err
    assert json.loads((out / "results.json").read_text())["encoder"]["fingerprint"] == "other"  # untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "nope"], "error: unknown suite 'nope'"),
        (["--suite", "beir", "--datasets", "scifact,nope"], "error: suite 'beir' has no dataset 'nope'"),
        (["--suite", "beir", "--datasets", "nfcorpus"], "nfcorpus: dataset folder not found"),
        (
            ["--suite", "beir", "--datasets", "cosqa-dev"],
            "suite 'coir' has 'cosqa-dev' as 'cosqa' (folder cosqa-dev): --suite coir --datasets cosqa; "
            "any local BEIR folder: --beir DIR",
        ),
        (["--beir", "no-such-folder"], "no-such-folder: not a folder; --beir takes BEIR folders"),
        (["--suite", "beir", "--datasets", "scifact", "--split", "dev"], "no qrels for split 'dev'"),
        (
            ["--suite", "beir", "--batch-size", "0"],
            "error: invalid option --batch-size: Input should be greater than or equal to 1",
        ),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, data_dir: Path, tiny_modernbert: str, capsys, args, message) -> None:
    argv = ["eval", *args, "--data-dir", str(data_dir), "--model", tiny_modernbert, "--out", str(tmp_path / "o")]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("error: ") and message in line for line in err), err


def test_eval_any_beir_folder(tmp_path: Path, data_dir: Path, tiny_modernbert: str, capsys) -> None:
    """``--beir DIR...``: folders of any name, each a dataset, with the same numbers as through a suite;
    ``-q`` after the subcommand works as before it."""
    folders = [str(data_dir / "cosqa-dev"), str(tmp_path / "copy" / "cosqa-dev")]
    import shutil

    shutil.copytree(folders[0], folders[1])
    argv = ["eval", "--beir", *folders, "--model", tiny_modernbert, "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*argv, "-q"]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["suite"] == "beir-folders" and list(results["metrics"]) == ["data-cosqa-dev", "copy-cosqa-dev"]
    a, b = results["metrics"].values()
    assert a == b and a["nDCG@10"] > 0
    assert "documents, " not in capsys.readouterr().err  # -q after `eval`: no info lines (dataset summary)


def test_log_options_after_the_subcommand() -> None:
    from mbert_retrieval.cli.app import build_parser

    parser = build_parser()
    for argv in (["-q", "ls"], ["ls", "-q"], ["index", "info", "x", "--quiet"]):
        args = parser.parse_args(argv)
        assert args.quiet is True and args.verbose is False, argv
    assert parser.parse_args(["ls"]).quiet is False
    assert parser.parse_args(["-v", "ls"]).verbose is True  # a subcommand's unset flag keeps the top-level one


def test_console_script_help_has_examples() -> None:
    exe = Path(sys.executable).with_name("mbert-retrieval")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mbert_retrieval"]
    out = subprocess.run([*cmd, "eval", "--help"], capture_output=True, text=True, check=True).stdout
    assert "examples:" in out and "--suite beir --datasets scifact" in out
    ls = subprocess.run([*cmd, "ls"], capture_output=True, text=True, check=True).stdout
    assert "suite beir" in ls and "cqadupstack" in ls


def test_a_built_index_is_scored_without_encoding_the_corpus(
    tmp_path: Path, data_dir: Path, tiny_modernbert: str, capsys
) -> None:
    """``eval --index-dir`` scores an ``index build`` output on a dataset's queries and qrels: the same
    metrics as ``eval --model`` with the same (exact) spec; ``search --qrels`` prints them for its run.
    The old ``--index`` spellings still work, with a note."""
    folder = data_dir / "cosqa-dev"
    idx = tmp_path / "idx"
    build = ["index", "build", "--model", tiny_modernbert, "--corpus", str(folder), "--spec", "faiss-flat"]
    assert main([*build, "--out", str(idx), "--no-progress"]) == 0
    direct = ["eval", "--beir", str(folder), "--model", tiny_modernbert, "--out", str(tmp_path / "a"), "--no-progress"]
    assert main([*direct, "--index", "faiss-flat"]) == 0
    assert "note: --index is now --spec" in capsys.readouterr().err
    scored = ["eval", "--beir", str(folder), "--index-dir", str(idx), "--out", str(tmp_path / "b"), "--no-progress"]
    assert main(scored) == 0
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in "ab")
    assert a["metrics"] == b["metrics"] and a["metrics"]["cosqa-dev"]["nDCG@10"] > 0
    assert b["index"]["name"] == "index-dir" and b["index"]["n_docs"] == 552
    assert b["encoder"]["fingerprint"] == a["encoder"]["fingerprint"]
    assert b["datasets"]["cosqa-dev"]["seconds"].keys() == {"encode_queries", "search"}  # no corpus encoding
    assert read_run(tmp_path / "a" / "runs" / "cosqa-dev.trec") == read_run(tmp_path / "b" / "runs" / "cosqa-dev.trec")
    capsys.readouterr()
    run = tmp_path / "run.trec"
    search = ["search", "--index", str(idx), "--queries", str(folder / "queries.jsonl"), "--out", str(run)]
    assert main([*search, "--qrels", str(folder / "qrels" / "test.tsv"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "note: --index is now --index-dir" in captured.err
    header, _, row = captured.out.strip().splitlines()
    assert header.split("|")[2].strip() == "nDCG@10"
    assert float(row.split("|")[2]) == round(100 * a["metrics"]["cosqa-dev"]["nDCG@10"], 2)
    # a built index holds one corpus
    assert main(["eval", "--suite", "beir", "--index-dir", str(idx), "--out", str(tmp_path / "c")]) == 1
    assert "--index-dir holds one corpus: give one dataset" in capsys.readouterr().err


def test_train_overrides_after_an_option(tmp_path: Path, data_dir: Path, capsys) -> None:
    """``train RECIPE --dry-run key=value``: overrides after an option are overrides, not an error."""
    data = f"data.train.path={data_dir / 'scifact'}"
    assert main(["train", "scifact-dense", "--dry-run", f"output_dir={tmp_path / 'o'}", data, "training.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and str(tmp_path / "o") in out
    with pytest.raises(SystemExit):
        main(["train", "scifact-dense", "--dry-run", "--no-such-option"])


def _help(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """``mbert-retrieval ARGV --help`` through ``main``: its exit code 0 checked, its text returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0, argv
    return capsys.readouterr().out


def test_every_help_is_tidy(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Every command and action (``index build/add/info`` included): a description, filled to at most 100
    columns on a wide terminal; no doubled percent; example command lines with no swallowed line break."""
    import re

    from mbert_retrieval.cli.app import _subcommands, build_parser

    monkeypatch.setenv("COLUMNS", "200")
    parser = build_parser()
    paths = [[]] + [p.prog.split()[1:] for p in _subcommands(parser)]
    assert ["index", "build"] in paths and ["index", "info"] in paths and ["validate"] in paths and ["ls"] in paths
    for path in paths:
        text = _help(path, capsys)
        assert "%%" not in text, path
        blocks = text.split("\n\n")
        assert blocks[0].startswith("usage:"), path
        description = []
        for block in blocks[1:]:
            if re.match(r"^[a-zA-Z][^\n]*:\n", block + "\n") and block.splitlines()[0].endswith(":"):
                break  # the first section ("positional arguments:", "options:")
            description += block.splitlines()
        assert description, f"`{' '.join(path)} --help` has no description"
        assert max(map(len, description)) <= 100, (path, description)
        lines = text.splitlines()
        commands = [
            line
            for i, line in enumerate(lines)
            if line.strip().startswith(("mbert-retrieval ", "torchrun ", "python "))
            or (i and lines[i - 1].endswith("\\"))
        ]
        for line in commands:
            command = re.sub(r"\s+#.*$", "", line)  # aligned trailing comments are fine
            assert not re.search(r"\S {5,}\S", command), (path, line)  # a continuation line joined onto this one


def test_quickstart_help_is_what_it_builds(capsys: pytest.CaptureFixture) -> None:
    """The sizes and the time `quickstart --help` states are the code's (and the measured run's)."""
    import re

    from mbert_retrieval.encoders.modernbert import MODEL_SIZES
    from mbert_retrieval.flows.quickstart import SIZES

    text = " ".join(_help(["quickstart"], capsys).split())
    model = {name: MODEL_SIZES[s.model] for name, s in SIZES.items()}
    shape = {name: f"{m['num_hidden_layers']} x {m['hidden_size']} model" for name, m in model.items()}
    assert SIZES["small"].max_docs is None and SIZES["small"].steps is None
    assert f"small (default): all examples, {shape['small']}, the recipes' steps" in text
    assert f"tiny: {SIZES['tiny'].max_docs} examples, {shape['tiny']}, {SIZES['tiny'].steps} steps" in text
    assert "6 x 256" not in text
    # the default run's time: docs/quickstart.md's measured total, rounded to minutes
    doc = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    minutes, seconds = map(int, re.search(r"^total: (\d+) min (\d+) s", doc, re.M).groups())
    stated = {int(m) for m in re.findall(r"about (\d+) minutes on 2 CPU cores", text)}
    assert stated == {round(minutes + seconds / 60)}, stated


def test_ls_columns_line_up(capsys: pytest.CaptureFixture) -> None:
    assert main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    datasets = [line for line in lines if line.startswith("    ")]
    recipes = [line for line in lines if line.startswith("recipe ")]
    indexes = [line for line in lines if line.startswith("index ")]
    assert len(datasets) > 10 and len(recipes) > 3 and len(indexes) > 3
    assert len({line.index(" split=") for line in datasets}) == 1  # one column across all suites
    for block, columns in ((recipes, [" kind=", " loss="]), (indexes, [" kind="])):
        for column in columns:
            assert len({line.index(column) for line in block}) == 1, column
    assert "12 subsets" in " ".join(datasets) and "1 subsets" not in " ".join(datasets)


def test_plural() -> None:
    from mbert_retrieval.core.types import plural

    assert plural(1, "shard") == "1 shard" and plural(0, "shard") == "0 shards" and plural(2, "shard") == "2 shards"
    assert plural(1234, "document id") == "1,234 document ids"
    assert plural(1, "query", "queries") == "1 query" and plural(3, "query", "queries") == "3 queries"
