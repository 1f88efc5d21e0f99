"""LR sweep end to end on the tiny ModernBERT: two runs trained and evaluated with the eval pipeline,
the pick is the best mean nDCG@10, and a second invocation skips finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_beir

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.flows.sweep import lr_label, parse_lrs, run_sweep

WORDS = ["apple", "river", "engine", "violin", "planet", "garden", "bridge", "candle", "forest", "silver"]


def _tiny_beir(root: Path) -> Path:
    corpus = [{"_id": f"d{i}", "title": w, "text": f"all about the {w} and more {w}s"} for i, w in enumerate(WORDS)]
    queries = [{"_id": f"q{i}", "text": f"what is a {w}"} for i, w in enumerate(WORDS)]
    train = [(f"q{i}", f"d{i}", 1) for i in range(6)]
    test = [(f"q{i}", f"d{i}", 1) for i in range(6, 10)]
    return write_beir(root / "tiny", corpus, queries, {"train": train, "test": test})


RECIPE = """\
name: tiny-sweep
kind: dense
output_dir: {out}
model: {{base: {base}, max_seq_length: 32}}
data:
  train: {{source: beir-qrels, path: {data}, split: train}}
loss: {{name: mnrl}}
training: {{batch_size: 3, max_steps: 2, warmup_ratio: 0.0, logging_steps: 1}}
"""

SUITE = """\
name: tiny-suite
metrics: [nDCG@10, R@10]
main_metric: nDCG@10
top_k: 10
datasets:
  - {name: tiny}
"""


def test_parse_lrs() -> None:
    assert parse_lrs("1e-5, 2e-5,1e-4") == [1e-5, 2e-5, 1e-4]
    assert [lr_label(x) for x in (2e-5, 1e-4, 0.001)] == ["2e-05", "0.0001", "0.001"]
    for bad, msg in (("", "at least one"), ("1e-5,x", "'x' is not a number"), ("-1", "positive"), ("1,1", "twice")):
        with pytest.raises(ConfigError, match=msg):
            parse_lrs(bad)


def test_sweep_two_learning_rates_end_to_end(tmp_path: Path, tiny_modernbert: str, monkeypatch) -> None:
    data = _tiny_beir(tmp_path / "data")
    out = tmp_path / "sweep"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=out, base=tiny_modernbert, data=data))
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    argv = ["sweep", str(recipe), "--lr", "1e-4,5e-3", "--datasets", "tiny", "--suite", str(suite)]
    argv += ["--data-dir", str(tmp_path / "data"), "--no-progress"]
    assert main(argv) == 0

    state = json.loads((out / "sweep.json").read_text())
    assert state["learning_rates"] == ["0.0001", "0.005"] and set(state["runs"]) == {"0.0001", "0.005"}
    for label, run in state["runs"].items():
        results = json.loads((out / f"lr-{label}" / "eval" / "results.json").read_text())
        assert run["metrics"] == {"tiny": results["metrics"]["tiny"]["nDCG@10"]}
        assert run["mean"] == run["metrics"]["tiny"] and run["finished"]
        resolved = (out / f"lr-{label}" / "recipe.resolved.yaml").read_text()
        assert f"learning_rate: {float(label)}" in resolved
    assert state["best"] == max(state["runs"], key=lambda k: state["runs"][k]["mean"])
    md = (out / "sweep.md").read_text()
    assert "| 0.0001" in md and "| 0.005" in md and "(best)" in md

    import mbert_retrieval.flows.train as train_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished learning rate was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    assert (
        run_sweep(
            str(recipe),
            [1e-4, 5e-3],
            datasets=["tiny"],
            suite=str(suite),
            data_dir=str(tmp_path / "data"),
            progress=False,
        )["best"]
        == state["best"]
    )

    with pytest.raises(ConfigError, match="another recipe setting"):
        run_sweep(str(recipe), [1e-4], overrides=["training.max_steps=3"], datasets=["tiny"], suite=str(suite))
