"""The embedded stdlib code-search set: real, deterministic, split by module, BEIR-loadable."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from mbert_retrieval.data.beir import load_beir_folder
from mbert_retrieval.data.stdlib import build_stdlib_dataset, collect_examples, module_split


def test_examples_are_docstring_free_code_with_their_first_sentence() -> None:
    examples = collect_examples()
    assert len(examples) > 1000
    by_id = {e.doc_id: e for e in examples}
    assert len(by_id) == len(examples)
    assert len({e.query.lower() for e in examples}) == len(examples)
    for e in examples[::97]:
        assert e.query and e.code
        assert e.query not in e.code  # the answer's docstring is removed
        ast.parse(e.code)  # still valid Python
        assert not e.qualname.split(".")[-1].startswith("_")


def test_split_is_by_top_level_module_and_stable() -> None:
    assert module_split("json.decoder") == module_split("json") == module_split("json.encoder")
    examples = collect_examples()
    splits = {e.module.split(".")[0]: module_split(e.module) for e in examples}
    assert set(splits.values()) == {"train", "test"}


def test_build_writes_beir_folder(tmp_path: Path) -> None:
    folder = build_stdlib_dataset(tmp_path / "py", max_docs=300)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["n_docs"] == 300
    test, train = load_beir_folder(folder, "test"), load_beir_folder(folder, "train")
    assert test.n_docs == 300 and len(test.queries) + len(train.queries) == 300
    assert meta["n_queries"] == {"train": len(train.queries), "test": len(test.queries)}
    modules = lambda ds: {d.split(":")[0].split(".")[0] for q in ds.qrels.values() for d in q}  # noqa: E731
    assert not modules(test) & modules(train)
    stamp = (folder / "corpus.jsonl").stat().st_mtime_ns
    build_stdlib_dataset(tmp_path / "py", max_docs=300)  # same settings: nothing rewritten
    assert (folder / "corpus.jsonl").stat().st_mtime_ns == stamp


def test_split_corpora_share_no_package_and_are_reused(tmp_path: Path) -> None:
    from mbert_retrieval.data.stdlib import build_stdlib_splits

    splits = build_stdlib_splits(tmp_path / "py", max_docs=400)
    assert not splits.reused
    train, test = load_beir_folder(splits.train, "train"), load_beir_folder(splits.test, "test")
    assert splits.counts["train"]["queries"] == len(train.queries) == train.n_docs
    assert splits.counts["test"]["queries"] == len(test.queries) == test.n_docs
    assert len(train.queries) + len(test.queries) == 400
    packages = lambda ds: {d.split(":")[0].split(".")[0] for d in ds.corpus_ids}  # noqa: E731
    assert not packages(train) & packages(test)  # neither queries nor documents cross the split
    assert splits.counts["test"]["modules"] == len(packages(test))
    for ds in (train, test):  # every query's one answer is in its own split's corpus
        assert all(len(judged) == 1 and next(iter(judged)) in set(ds.corpus_ids) for judged in ds.qrels.values())
        assert not any(q.split("(")[0].replace(".", "").isidentifier() and "(" in q[:40] for q in ds.queries.values())
    assert f"test {len(test.queries):,} queries" in splits.summary()
    stamp = (splits.test / "corpus.jsonl").stat().st_mtime_ns
    again = build_stdlib_splits(tmp_path / "py", max_docs=400)
    assert again.reused and again.counts == splits.counts
    assert (splits.test / "corpus.jsonl").stat().st_mtime_ns == stamp
