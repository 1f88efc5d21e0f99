"""`index build|add|info` and `search` through their argparse parsers; the SearchIndex API; model checks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mbert_retrieval.cli.app import main
from mbert_retrieval.cli.index import add_parsers
from mbert_retrieval.config import EncoderConfig
from mbert_retrieval.core.errors import ConfigError, OutputExistsError
from mbert_retrieval.encoders import encoder_from_config
from mbert_retrieval.results.runs import read_run
from mbert_retrieval.retrieval.search import SearchIndex

DOCS = [
    ("py1", "Sort a list in Python with sorted() and a key function."),
    ("py2", "Read a text file line by line with open() and a for loop."),
    ("py3", "Parse a JSON string into a dictionary with json.loads."),
    ("py4", "Open a TCP socket and send bytes to a server."),
    ("py5", "Match a regular expression against a string with re.search."),
    ("py6", "Write unit tests with pytest fixtures and assertions."),
]


def run_cli(argv: list[str]) -> int:
    """The harness a main CLI uses: a parser with these subcommands, then the handler."""
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_modernbert: str) -> Path:
    root = tmp_path_factory.mktemp("search")
    (root / "corpus.tsv").write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in DOCS), encoding="utf-8")
    argv = ["index", "build", "--model", tiny_modernbert, "--corpus", str(root / "corpus.tsv")]
    assert (
        run_cli([*argv, "--spec", "faiss-flat", "--out", str(root / "idx"), "--shard-size", "4", "--no-progress"]) == 0
    )
    return root / "idx"


def test_build_prints_a_summary(built: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["build"]["corpus_format"] == "tsv" and manifest["n_docs"] == len(DOCS)
    assert run_cli(["index", "info", str(built)]) == 0
    out = capsys.readouterr().out
    assert "faiss Flat (faiss-flat), 6 documents" in out and manifest["encoder"]["fingerprint"] in out


def test_search_single_query_text_and_json(built: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert run_cli(["search", "--index", str(built), "Read a text file line by line", "-k", "3"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["rank", "score", "id", "text"]
    assert len(lines) == 3 and lines[0].split()[0] == "1"
    assert header.index("score") + len("score") == lines[0].index(lines[0].split()[1]) + len(lines[0].split()[1])
    assert run_cli(["search", "--index-dir", str(built), "Read a text file line by line", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3] and set(hits[0]) == {"rank", "id", "score", "snippet"}
    assert hits[0]["id"] == lines[0].split()[2]
    assert hits[0]["snippet"] == dict(DOCS)[hits[0]["id"]]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_batch_writes_a_trec_run(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, (_, t) in enumerate(DOCS[:4])), encoding="utf-8"
    )
    out = tmp_path / "run.trec"
    assert run_cli(["search", "--index-dir", str(built), "--queries", str(queries), "--out", str(out)]) == 0
    run = read_run(out)
    assert list(run) == ["q0", "q1", "q2", "q3"] and all(len(h) == len(DOCS) for h in run.values())  # k: 1000
    assert all(line.count(" ") == 5 for line in out.read_text().splitlines())
    with SearchIndex.load(built) as index:
        expected = index.run({f"q{i}": t for i, (_, t) in enumerate(DOCS[:4])}, k=1000)
    for qid in run:
        assert run[qid] == pytest.approx(expected[qid], abs=1e-6)
    with pytest.raises(OutputExistsError, match=r"run\.trec already exists; pass --overwrite"):
        run_cli(["search", "--index-dir", str(built), "--queries", str(queries), "--out", str(out)])
    assert run_cli(["search", "--index-dir", str(built), "--queries", str(queries), "--json", "-k", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in rows] == ["q0", "q1", "q2", "q3"] and all(len(r["hits"]) == 2 for r in rows)


def test_search_option_errors(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="either a query text or --queries"):
        run_cli(["search", "--index-dir", str(built)])
    with pytest.raises(ConfigError, match="--queries needs --out"):
        run_cli(["search", "--index-dir", str(built), "--queries", "q.jsonl"])
    # the stand-alone entry point prints user errors as one line and exits 1
    assert main(["search", "--index-dir", str(tmp_path / "missing"), "text"]) == 1
    assert capsys.readouterr().err.strip().endswith("missing: index folder not found")
    with pytest.raises(SystemExit) as exit_:
        main(["index", "build", "--model", "m", "--corpus", "c", "--spec", "s", "--out", "o", "--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size: expected a positive integer, got '0'" in capsys.readouterr().err


def test_search_index_api(built: Path, tiny_modernbert: str) -> None:
    with SearchIndex.load(built) as index:
        assert len(index) == len(DOCS)
        (hits,) = index.search("Parse a JSON string into a dictionary", k=2)
        assert len(hits) == 2 and hits[0].snippet is not None
        assert index.search([], k=2) == []
        many = index.search([t for _, t in DOCS], k=10)
        assert all(len(h) == len(DOCS) for h in many)  # k larger than the index: every document once
    # the same model given explicitly (another path to the same weights) passes the check
    with SearchIndex.load(built, model=tiny_modernbert) as index:
        assert index.search("sockets", k=1)[0][0].id in dict(DOCS)


def test_mismatched_model_is_refused(built: Path, tiny_modernbert: str, minilm_path: str) -> None:
    with pytest.raises(ConfigError, match=r"index holds 64-dim vectors from .*; the encoder .* gives 384-dim vectors"):
        SearchIndex.load(built, model=minilm_path)
    other = encoder_from_config(EncoderConfig(model=tiny_modernbert, query_prompt="query: "), progress=False)
    with pytest.raises(ConfigError, match=r"was built with encoder .* \(fingerprint [0-9a-f]+\); .* differs"):
        SearchIndex.load(built, encoder=other)


def test_index_add_through_the_cli(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(built, idx)
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"_id": "py7", "text": "Format dates with datetime.strftime."}) + "\n")
    capsys.readouterr()
    assert run_cli(["index", "add", str(idx), "--corpus", str(new), "--no-progress"]) == 0
    assert "added 1 document to" in capsys.readouterr().out
    with SearchIndex.load(idx) as index:
        assert len(index) == len(DOCS) + 1
        (hits,) = index.search("Format dates with datetime.strftime.", k=1)
        assert hits[0].id == "py7"


@pytest.mark.parametrize("command", [["index", "build"], ["index", "add"], ["search"]])
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "mbert-retrieval " + " ".join(command) in out.split("examples:\n")[1]
