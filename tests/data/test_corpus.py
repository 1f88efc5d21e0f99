"""Corpus input for `index build`: BEIR folder, JSONL, TSV; one-line errors on bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.types import snippet
from mbert_retrieval.data.corpus import load_corpus_input, load_queries_input


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


DOCS = [
    {"_id": "d1", "title": "Sorting", "text": "How to sort a list."},
    {"_id": 2, "text": "Reading a file."},
    {"_id": "d3", "title": "Only a title"},
]


def test_jsonl_beir_folder_and_gzip(tmp_path: Path, small_beir: Path) -> None:
    c = load_corpus_input(_jsonl(tmp_path / "c.jsonl", DOCS))
    assert (c.ids, c.texts, c.format) == (
        ["d1", "2", "d3"],
        ["Sorting How to sort a list.", "Reading a file.", "Only a title"],
        "jsonl",
    )
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress((tmp_path / "c.jsonl").read_bytes()))
    assert load_corpus_input(gz).ids == c.ids
    beir = load_corpus_input(small_beir)
    assert beir.format == "beir" and beir.ids == ["d1", "d2", "d3", "q2"]


def test_tsv_with_and_without_header(tmp_path: Path) -> None:
    plain = tmp_path / "c.tsv"
    plain.write_text("1\tfirst passage\n\n2\tsecond passage\n", encoding="utf-8")
    c = load_corpus_input(plain)
    assert (c.ids, c.texts, c.format) == (["1", "2"], ["first passage", "second passage"], "tsv")
    header = tmp_path / "h.tsv"
    header.write_text("id\ttext\n7\tseven\n", encoding="utf-8")
    assert load_corpus_input(header).ids == ["7"]
    titled = tmp_path / "t.tsv"
    titled.write_text("doc_id\ttitle\ttext\na\tTitle A\tbody a\n", encoding="utf-8")
    assert load_corpus_input(titled).texts == ["Title A body a"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', r"bad\.jsonl:2: malformed JSON"),
        ("noid.jsonl", '{"text": "x"}\n', r"noid\.jsonl:1: field '_id': missing"),
        (
            "dup.jsonl",
            '{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n',
            r"dup\.jsonl:2: field '_id': duplicate id 'a' \(first on line 1\)",
        ),
        ("space.jsonl", '{"_id": "a b", "text": "x"}\n', r"space\.jsonl:1: field '_id': id 'a b' holds white space"),
        ("type.jsonl", '{"_id": "a", "text": 3}\n', r"type\.jsonl:1: field 'text': must be a string"),
        ("empty.jsonl", "\n\n", r"empty\.jsonl: the corpus holds no documents"),
        ("cols.tsv", "1\tone\n2\ttwo\textra\n", r"cols\.tsv:2: expected 2 tab-separated columns \(id, text\), got 3"),
        ("noid.tsv", "\tone\n", r"noid\.tsv:1: field 'id': is empty"),
        ("dup.tsv", "1\tone\n1\tagain\n", r"dup\.tsv:2: field '_id': duplicate id '1'"),
        ("latin.tsv", b"1\tcaf\xe9\n", r"latin\.tsv:1: not valid UTF-8"),
        ("corpus.csv", "1,one\n", r"corpus\.csv: unknown corpus format"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_corpus_input(path)
    assert "\n" not in str(err.value)


def test_missing_corpus_and_folder_without_corpus(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="corpus not found"):
        load_corpus_input(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"no corpus\.jsonl or corpus\.jsonl\.gz in this folder"):
        load_corpus_input(tmp_path)


def test_blank_documents_refused_unless_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "title": " ", "text": "\t"}])
    with pytest.raises(DataError, match=r"c\.jsonl:2: field 'text': document 'b' has a blank text.*--skip-blank"):
        load_corpus_input(path)
    c = load_corpus_input(path, skip_blank=True)
    assert c.ids == ["a"] and c.warnings == {"blank documents (skipped)": 1}
    assert "skipped 1 blank document (the first on line 2, id 'b')" in caplog.text
    only_blank = _jsonl(tmp_path / "blank.jsonl", [{"_id": "a", "text": ""}])
    with pytest.raises(DataError, match=r"holds no documents \(1 blank document skipped\)"):
        load_corpus_input(only_blank, skip_blank=True)
    # a blank document's id still counts for duplicates
    dup = _jsonl(tmp_path / "dup.jsonl", [{"_id": "a", "text": ""}, {"_id": "a", "text": "x"}])
    with pytest.raises(DataError, match="duplicate id 'a'"):
        load_corpus_input(dup, skip_blank=True)


def test_queries_jsonl_and_tsv(tmp_path: Path) -> None:
    q = _jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "first"}, {"_id": 2, "text": "second"}])
    assert load_queries_input(q) == {"q1": "first", "2": "second"}
    t = tmp_path / "q.tsv"
    t.write_text("qid\tquery\nq1\tfirst\n", encoding="utf-8")
    assert load_queries_input(t) == {"q1": "first"}
    blank = _jsonl(tmp_path / "b.jsonl", [{"_id": "q1", "text": " "}])
    with pytest.raises(DataError, match=r"b\.jsonl:1: field 'text': query 'q1' is blank"):
        load_queries_input(blank)
    with pytest.raises(DataError, match="queries file not found"):
        load_queries_input(tmp_path / "missing.jsonl")


def test_snippet() -> None:
    assert snippet("a\n\n b   c") == "a b c"
    long = snippet("word " * 200, chars=50)
    assert len(long) == 50 and long.endswith("…")
