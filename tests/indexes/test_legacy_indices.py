"""Indices built on the old stack (PyLate 1.6, fast-plaid 1.4.6, voyager 2.1.0) load and search as they did.

The fixtures in ``tests/fixtures/pylate-indices/`` were made by ``tests/fixtures/build_pylate_fixture.py``
(``mbert-retrieval index build`` over ``pylate-corpus`` with the ``pylate-colbert`` checkpoint), with
``runs.json`` the top 10 of the first 12 queries recorded then. Each fixture is copied before it is
opened: fast-plaid writes into its index folder (a lock file, merged files). Query token vectors come
from sentence-transformers' ``MultiVectorEncoder`` (the same embeddings as PyLate's for this checkpoint).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.indexes.plaid import PlaidIndex
from mbert_retrieval.indexes.voyager import VoyagerIndex

LEGACY = FIXTURES / "pylate-indices"
LOADERS = {"plaid": PlaidIndex.load, "voyager": VoyagerIndex.load}


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, dict[str, float]]]:
    return json.loads((LEGACY / "runs.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def queries() -> tuple[list[str], list[np.ndarray]]:
    """The first 12 queries of the fixture corpus, as ColBERT query token matrices ``[16, 32]``."""
    from sentence_transformers import MultiVectorEncoder

    rows = [json.loads(line) for line in (FIXTURES / "pylate-corpus" / "queries.jsonl").read_text().splitlines()]
    rows = rows[:12]
    model = MultiVectorEncoder(str(FIXTURES / "pylate-colbert"), device="cpu")
    emb = model.encode_query([r["text"] for r in rows], convert_to_numpy=True)
    return [r["_id"] for r in rows], [np.asarray(e, dtype=np.float32) for e in emb]


def _copy(kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(LEGACY / kind, tmp_path / kind))


@pytest.mark.parametrize("kind", ["plaid", "voyager"])
def test_legacy_index_reproduces_recorded_run(kind: str, tmp_path: Path, queries, recorded) -> None:
    qids, emb = queries
    index = LOADERS[kind](_copy(kind, tmp_path))
    assert len(index) == 17
    run = index.search(qids, emb, 10)
    want = recorded[kind]
    assert list(run) == list(want)
    for qid in qids:
        assert list(run[qid]) == list(want[qid]), qid  # the same documents, in the same order
        np.testing.assert_allclose(list(run[qid].values()), list(want[qid].values()), rtol=0, atol=1e-5)


def test_legacy_plaid_index_takes_new_documents(tmp_path: Path, queries) -> None:
    """An old index can still grow: fast-plaid 1.7 updates the 1.4.6 files."""
    qids, emb = queries
    index = PlaidIndex.load(_copy("plaid", tmp_path))
    index.add(["new-doc"], [emb[0]])  # a document made of query 0's tokens
    assert len(index) == 18
    assert next(iter(index.search(qids[:1], emb[:1], 3)[qids[0]])) == "new-doc"


def _assert_refused(kind: str, folder: Path) -> str:
    with pytest.raises(DataError) as err:
        LOADERS[kind](folder)
    message = str(err.value)
    assert "\n" not in message
    manifest = json.loads((LEGACY / kind / "manifest.json").read_text(encoding="utf-8"))
    model, corpus = manifest["encoder_load"]["model"], manifest["build"]["corpus"]  # absolute paths at build time
    assert f"rebuild it: mbert-retrieval index build --model {model} --corpus {corpus} " in message
    assert f"--spec {kind} --out {folder} --overwrite" in message
    return message


def test_unloadable_plaid_files_are_refused_with_a_rebuild_hint(tmp_path: Path) -> None:
    folder = _copy("plaid", tmp_path)
    (folder / "fast_plaid_index" / "centroids.npy").write_bytes(b"not an npy file")
    message = _assert_refused("plaid", folder)
    assert message.startswith(f"{folder}: the PLAID index cannot be loaded by fast-plaid 1.")

    (folder / "fast_plaid_index" / "metadata.json").unlink()
    assert "fast_plaid_index/metadata.json is missing" in _assert_refused("plaid", folder)

    other = _copy("plaid", tmp_path / "other")
    (other / "doc_ids.txt").write_text("only-one\n", encoding="utf-8")
    assert "fast-plaid holds 17 documents, doc_ids.txt lists 1" in _assert_refused("plaid", other)


def test_unloadable_voyager_file_is_refused_with_a_rebuild_hint(tmp_path: Path) -> None:
    folder = _copy("voyager", tmp_path)
    file = folder / "voyager" / "index.voyager"
    file.write_bytes(file.read_bytes()[:100])
    message = _assert_refused("voyager", folder)
    assert message.startswith(f"{folder}: the Voyager index cannot be loaded by voyager 2.")

    file.unlink()
    assert "voyager/index.voyager is missing" in _assert_refused("voyager", folder)
