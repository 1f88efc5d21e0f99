"""The model card: recipe, data, batch, time and eval-during-training numbers (dense and ColBERT),
and `mbert-retrieval card` recording an eval of the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_beir

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.training.card import CARD_EVAL_START, record_eval_in_card

WORDS = ["apple", "river", "engine", "violin", "planet", "garden", "bridge", "candle", "forest", "silver"]

RECIPE = """\
name: card-test
description: a tiny run for the card test
kind: {kind}
output_dir: {out}
model: {{base: {base}, max_seq_length: 32, document_length: 32, embedding_size: 16}}
data:
  train: {{source: beir-qrels, path: {data}, split: train}}
  eval: {{beir: {data}, split: test, steps: 1}}
loss: {{name: {loss}}}
training: {{batch_size: 3, max_steps: 2, warmup_ratio: 0.0, logging_steps: 1, batch_sampler: batch_sampler}}
"""

SUITE = "name: tiny-suite\nmetrics: [nDCG@10, R@10]\ntop_k: 10\ndatasets:\n  - {name: tiny}\n"


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    corpus = [{"_id": f"d{i}", "title": w, "text": f"all about the {w} and more {w}s"} for i, w in enumerate(WORDS)]
    queries = [{"_id": f"q{i}", "text": f"what is a {w}"} for i, w in enumerate(WORDS)]
    qrels = {"train": [(f"q{i}", f"d{i}", 1) for i in range(6)], "test": [(f"q{i}", f"d{i}", 1) for i in range(6, 10)]}
    return write_beir(tmp_path / "data" / "tiny", corpus, queries, qrels)


def _train(tmp_path: Path, base: str, data: Path, kind: str, loss: str) -> Path:
    recipe = tmp_path / f"{kind}.yaml"
    out = tmp_path / f"run-{kind}"
    recipe.write_text(RECIPE.format(kind=kind, out=out, base=base, data=data, loss=loss))
    assert main(["train", str(recipe)]) == 0
    return out


def test_dense_card_and_recorded_eval(tmp_path: Path, tiny_modernbert: str, tiny_beir: Path) -> None:
    out = _train(tmp_path, tiny_modernbert, tiny_beir, "dense", "mnrl")
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [row for row in log if "eval_cosine_ndcg@10" in row]
    assert [row["step"] for row in evals] == [1, 2]
    for row in evals:
        assert f"| {row['step']} | {row['eval_cosine_ndcg@10']:.4f} |" in card
    assert "Kept: the best checkpoint" in card
    assert "- 6 training rows, columns query, positive" in card and "- global batch: 3" in card
    assert "optimizer steps in" in card and "```yaml\nname: card-test" in card
    assert card.startswith("---\n")  # the library's front matter stays first; its own card follows ours
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(out / "model")).encode(["x"]).shape[0] == 1  # still a plain ST folder

    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    evalout = tmp_path / "eval"
    argv = ["eval", "--suite", str(suite), "--datasets", "tiny", "--data-dir", str(tiny_beir.parent)]
    assert main([*argv, "--model", str(out / "model"), "--out", str(evalout), "--no-progress"]) == 0
    assert main(["card", str(out / "model"), "--eval", str(evalout)]) == 0
    assert main(["card", str(out / "model"), "--eval", str(evalout)]) == 0  # replaced, not appended
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    ndcg = json.loads((evalout / "results.json").read_text())["metrics"]["tiny"]["nDCG@10"]
    assert card.count(f"| tiny | {ndcg:.4f} |") == 1 and card.count(CARD_EVAL_START) == 1
    assert "Not evaluated yet" not in card
    with pytest.raises(DataError, match="no eval results here"):
        record_eval_in_card(out / "model", tmp_path / "nowhere")


def test_colbert_evaluates_during_training(tmp_path: Path, tiny_modernbert: str, tiny_beir: Path) -> None:
    out = _train(tmp_path, tiny_modernbert, tiny_beir, "colbert", "contrastive")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [row for row in log if "eval_maxsim_ndcg@10" in row]
    assert [row["step"] for row in evals] == [1, 2] and all(0 <= r["eval_maxsim_ndcg@10"] <= 1 for r in evals)
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert f"| 2 | {evals[1]['eval_maxsim_ndcg@10']:.4f} |" in card and "loss `contrastive`" in card
