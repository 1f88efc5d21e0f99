"""The BEIR folder loader: real layout, MTEB document text, and one-line errors on bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import write_beir

from mbert_retrieval.config import DatasetSpec
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.data.beir import load_beir_folder, load_qrels


def test_loads_small_folder(small_beir: Path) -> None:
    ds = load_beir_folder(small_beir, "test")
    assert ds.corpus_ids == ["d1", "d2", "d3", "q2"]
    # (title + " " + text).strip(), as MTEB: an empty title leaves no leading space
    assert ds.corpus_texts[0] == "Sorting How to sort a list in Python with sorted()."
    assert ds.corpus_texts[1] == "Reading a file line by line."
    # only queries with judgements in the split, as BEIR
    assert set(ds.queries) == {"q1", "q2"}
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert load_beir_folder(small_beir, "train").qrels == {"q1": {"d1": 1}}


def test_gzipped_corpus_and_crlf_qrels(tmp_path: Path, small_beir: Path) -> None:
    raw = (small_beir / "corpus.jsonl").read_bytes()
    (small_beir / "corpus.jsonl").unlink()
    with gzip.open(small_beir / "corpus.jsonl.gz", "wb") as f:
        f.write(raw)
    qrels = small_beir / "qrels" / "test.tsv"
    qrels.write_bytes(qrels.read_bytes().replace(b"\n", b"\r\n"))
    ds = load_beir_folder(small_beir, "test")
    assert ds.n_docs == 4 and ds.qrels["q2"] == {"d2": 2, "d3": 0}


def test_real_scifact(data_dir: Path) -> None:
    ds = load_beir_folder(data_dir / "scifact", "test")
    assert (ds.n_docs, len(ds.queries), sum(map(len, ds.qrels.values()))) == (5183, 300, 339)
    assert ds.warnings == {}
    train = load_beir_folder(data_dir / "scifact", "train")
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (809, 919)


def _corrupt(folder: Path, name: str, line: int, text: str) -> None:
    path = folder / name
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "line", "text", "expected"),
    [
        ("corpus.jsonl", 2, '{"_id": "d2", "text": "unterminated', "corpus.jsonl:2: malformed JSON"),
        ("corpus.jsonl", 3, '{"title": "x", "text": "no id"}', "corpus.jsonl:3: field '_id': missing"),
        (
            "corpus.jsonl",
            3,
            '{"_id": "d1", "text": "again"}',
            "corpus.jsonl:3: field '_id': duplicate id 'd1' (first on line 1)",
        ),
        ("corpus.jsonl", 2, '["a", "list"]', "corpus.jsonl:2: expected a JSON object"),
        ("corpus.jsonl", 2, '{"_id": "d2", "text": 5}', "corpus.jsonl:2: field 'text': must be a string"),
        ("queries.jsonl", 1, '{"_id": "q2", "text": "dup"}', "queries.jsonl:2: field '_id': duplicate id 'q2'"),
        ("qrels/test.tsv", 2, "q1\td1\t1.5", "test.tsv:2: field 'score': relevance must be an integer"),
        ("qrels/test.tsv", 3, "q2 d2 1", "test.tsv:3: expected 3 tab-separated columns"),
    ],
)
def test_bad_input_names_file_line_and_field(small_beir: Path, file: str, line: int, text: str, expected: str) -> None:
    _corrupt(small_beir, file, line, text)
    with pytest.raises(DataError) as err:
        load_beir_folder(small_beir, "test")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_non_utf8_line(small_beir: Path) -> None:
    path = small_beir / "corpus.jsonl"
    path.write_bytes(path.read_bytes() + b'{"_id": "bad", "text": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:5: not valid UTF-8"):
        load_beir_folder(small_beir, "test")


def test_tolerated_problems_are_counted(small_beir: Path) -> None:
    rows = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tmissing-doc\t1\nghost\td1\t1\nq1\td1\t1\n"
    (small_beir / "qrels" / "test.tsv").write_text(rows)
    with open(small_beir / "corpus.jsonl", "a") as f:
        f.write(json.dumps({"_id": "empty", "title": "", "text": "  "}) + "\n")
    ds = load_beir_folder(small_beir, "test")
    # an unknown document stays judged (it counts as relevant and never retrieved, as in BEIR)
    assert ds.qrels == {"q1": {"d1": 1, "missing-doc": 1}}
    assert ds.warnings == {
        "qrels for unknown documents (kept, never retrieved)": 1,
        "qrels for unknown queries (dropped)": 1,
        "duplicate qrels lines (last one kept)": 1,
        "empty documents (kept)": 1,
    }


def test_qrels_without_header_keep_first_row(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("q1\td1\t1\nq1\td2\t2\n")
    from collections import Counter

    warnings: Counter[str] = Counter()
    assert load_qrels(path, warnings) == {"q1": {"d1": 1, "d2": 2}}
    assert warnings == {"qrels without a header line (first line read as data)": 1}


def test_missing_split_lists_available(small_beir: Path) -> None:
    with pytest.raises(DataError, match=r"no qrels for split 'dev'; available splits: \['test', 'train'\]"):
        load_beir_folder(small_beir, "dev")


def test_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    spec = DatasetSpec(name="nfcorpus")
    with pytest.raises(DataError, match=r"nfcorpus: dataset folder not found; .*--download"):
        next(iter_datasets(spec, data_dir=tmp_path))


def test_subsets_are_yielded_one_by_one(tmp_path: Path) -> None:
    for sub in ("android", "gis"):
        write_beir(
            tmp_path / "cqadupstack" / sub,
            [{"_id": f"{sub}-d", "text": "t"}],
            [{"_id": "q", "text": "x"}],
            {"test": [("q", f"{sub}-d", 1)]},
        )
    spec = DatasetSpec(name="cqadupstack", subsets=["android", "gis"])
    names = [ds.name for ds in iter_datasets(spec, data_dir=tmp_path)]
    assert names == ["cqadupstack/android", "cqadupstack/gis"]
