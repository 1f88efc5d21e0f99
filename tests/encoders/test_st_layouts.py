"""Models saved by sentence-transformers 5.x (legacy ``sentence_transformers.models.*`` module paths, like
the all-MiniLM-L6-v2 package's) and by the installed 6.x (``sentence_transformers.base.modules.*``) load
alike and give the same embeddings; the SciFact numbers of both are in ``test_reproduce.py`` (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.encoders import detect_kind, load_encoder

TEXTS = ["how do statins lower cholesterol", "A randomized trial of 120 patients, with a 2-year follow-up."]


@pytest.fixture(scope="module")
def resaved_minilm(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 re-saved by the installed sentence-transformers, as a user of it would."""
    from sentence_transformers import SentenceTransformer

    out = tmp_path_factory.mktemp("minilm-st6") / "model"
    SentenceTransformer(minilm_path, device="cpu").save(str(out))
    return out


def test_legacy_and_current_dense_layouts_give_the_same_embeddings(minilm_path: str, resaved_minilm: Path) -> None:
    legacy = [m["type"] for m in json.loads((Path(minilm_path) / "modules.json").read_text())]
    current = [m["type"] for m in json.loads((resaved_minilm / "modules.json").read_text())]
    assert legacy[0] == "sentence_transformers.models.Transformer"  # the 5.x layout
    assert current[0].startswith("sentence_transformers.base.modules.")  # what 5.4+ writes
    old = load_encoder(minilm_path, show_progress=False, device="cpu")
    new = load_encoder(str(resaved_minilm), show_progress=False, device="cpu")
    assert detect_kind(str(resaved_minilm)) == "dense" and new.kind == "dense"
    assert new.describe() | {"name": ""} == old.describe() | {"name": ""}  # fingerprint included
    np.testing.assert_array_equal(new.encode_documents(TEXTS), old.encode_documents(TEXTS))
    np.testing.assert_array_equal(new.encode_queries(TEXTS), old.encode_queries(TEXTS))


def test_a_current_save_evaluates_through_the_cli(resaved_minilm: Path, data_dir: Path, tmp_path: Path) -> None:
    """The defect that started the move: ``eval`` on a model saved by sentence-transformers >= 5.4 ended in
    ``ModuleNotFoundError: No module named 'sentence_transformers.base'``."""
    from mbert_retrieval.cli.app import main

    argv = ["eval", "--suite", "coir", "--datasets", "cosqa", "--data-dir", str(data_dir)]
    argv += ["--model", str(resaved_minilm), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 0
    ndcg = json.loads((tmp_path / "o" / "results.json").read_text())["metrics"]["cosqa"]["nDCG@10"]
    assert ndcg == pytest.approx(0.88608, abs=5e-5)  # all-MiniLM-L6-v2 from its package gives 0.88608
