"""Training mechanics on the tiny ModernBERT: cached == non-cached gradients; kill and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mbert_retrieval.recipes import load_recipe
from mbert_retrieval.train import build_model, make_loss

RECIPE = """\
name: t
kind: {kind}
output_dir: {out}
model: {{base: {base}, max_seq_length: 48, document_length: 48, embedding_size: 16}}
data:
  train: {{source: triples, path: {data}}}
loss: {{name: {loss}, mini_batch_size: 2}}
training: {{batch_size: 8, learning_rate: 1.0e-4, warmup_ratio: 0.0, logging_steps: 1}}
"""


def _recipe(tmp_path: Path, kind: str, loss: str, base: str, data: Path, out: Path | None = None):
    path = tmp_path / f"{kind}-{loss}.yaml"
    path.write_text(RECIPE.format(kind=kind, loss=loss, base=base, data=data, out=out or tmp_path / "out"))
    return load_recipe(path)


@pytest.fixture
def triples_file(tmp_path: Path, data_dir: Path) -> Path:
    lines = (data_dir / "msmarco-triples-sample" / "triples.tsv").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "triples.tsv"
    path.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    return path


def _grads(recipe, features_fn) -> tuple[float, dict[str, torch.Tensor]]:
    model = build_model(recipe)  # seeded: the same weights every time
    model.train()
    loss_fn = make_loss(recipe, model)
    features, labels = features_fn(model)
    loss = loss_fn(features, labels)
    loss.backward()
    return float(loss), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("kind", "plain", "cached"), [("dense", "mnrl", "cached_mnrl"), ("colbert", "contrastive", "cached_contrastive")]
)
def test_cached_loss_gives_the_same_gradients(
    tmp_path: Path, tiny_modernbert: str, triples_file: Path, kind, plain, cached
) -> None:
    rows = [line.split("\t") for line in triples_file.read_text(encoding="utf-8").splitlines()[:8]]

    def features(model):
        if kind == "dense":
            cols = [[r[i] for r in rows] for i in range(3)]
            return [model.tokenize(c) for c in cols], None
        from pylate.utils import ColBERTCollator

        batch = ColBERTCollator(model.tokenize)([{"query": r[0], "positive": r[1], "negative": r[2]} for r in rows])
        names = ["query", "positive", "negative"]
        return [{k.removeprefix(f"{n}_"): v for k, v in batch.items() if k.startswith(f"{n}_")} for n in names], None

    loss_a, grads_a = _grads(_recipe(tmp_path, kind, plain, tiny_modernbert, triples_file), features)
    loss_b, grads_b = _grads(_recipe(tmp_path, kind, cached, tiny_modernbert, triples_file), features)
    assert loss_a == pytest.approx(loss_b, rel=1e-4, abs=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-3, atol=1e-5)


def test_pylate_cached_contrastive_alone_scales_gradients_by_the_batch_size(
    tmp_path: Path, tiny_modernbert: str, triples_file: Path
) -> None:
    """Pins the PyLate 1.6 behaviour that ``train._BatchMean`` corrects: its ``CachedContrastive``
    (default ``size_average=True``) returns the mean loss but the gradients of the sum. When this
    fails, PyLate has fixed it and the wrapper in ``train.make_loss`` can go."""
    from pylate import losses as pylate_losses
    from pylate.utils import ColBERTCollator

    rows = [line.split("\t") for line in triples_file.read_text(encoding="utf-8").splitlines()[:8]]
    recipe = _recipe(tmp_path, "colbert", "contrastive", tiny_modernbert, triples_file)
    grads = []
    for loss_cls in (pylate_losses.Contrastive, pylate_losses.CachedContrastive):
        model = build_model(recipe)
        model.train()
        kwargs = {"mini_batch_size": 2} if loss_cls is pylate_losses.CachedContrastive else {}
        batch = ColBERTCollator(model.tokenize)([{"query": r[0], "positive": r[1], "negative": r[2]} for r in rows])
        names = ["query", "positive", "negative"]
        features = [{k.removeprefix(f"{n}_"): v for k, v in batch.items() if k.startswith(f"{n}_")} for n in names]
        loss_cls(model=model, **kwargs)(features, None).backward()
        grads.append(dict(model.named_parameters())["1.linear.weight"].grad.clone())
    torch.testing.assert_close(grads[1], len(rows) * grads[0], rtol=1e-3, atol=1e-5)


def test_killed_training_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_modernbert: str, triples_file: Path, monkeypatch
) -> None:
    from sentence_transformers import SentenceTransformerTrainer

    from mbert_retrieval.cli import main

    out = tmp_path / "run"
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(RECIPE.format(kind="dense", loss="mnrl", base=tiny_modernbert, data=triples_file, out=out))
    argv = ["train", str(recipe_path), "training.max_steps=4", "training.save_steps=2"]

    real_step = SentenceTransformerTrainer.training_step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during step 3, after checkpoint-2 was written
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", dying_step)
    assert main(argv) == 130
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "model").exists()
    resumed = {"n": 0}

    def counting_step(self, *args, **kwargs):
        resumed["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", counting_step)
    assert main([*argv, "--resume"]) == 0
    assert resumed["n"] == 2  # only the steps the killed run had not finished
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert sorted({row["step"] for row in log if "loss" in row}) == [1, 2, 3, 4]  # history carried over
    assert (out / "model" / "modules.json").is_file()
