"""Training mechanics on the tiny ModernBERT: cached == non-cached gradients; kill and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mbert_retrieval.recipes import load_recipe
from mbert_retrieval.training.losses import make_loss
from mbert_retrieval.training.model import build_model

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
    return float(loss.detach()), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("kind", "plain", "cached"), [("dense", "mnrl", "cached_mnrl"), ("colbert", "contrastive", "cached_contrastive")]
)
def test_cached_loss_gives_the_same_gradients(
    tmp_path: Path, tiny_modernbert: str, triples_file: Path, kind, plain, cached
) -> None:
    rows = [line.split("\t") for line in triples_file.read_text(encoding="utf-8").splitlines()[:8]]

    def features(model):
        return _features(model, [{"query": r[0], "positive": r[1], "negative": r[2]} for r in rows]), None

    loss_a, grads_a = _grads(_recipe(tmp_path, kind, plain, tiny_modernbert, triples_file), features)
    loss_b, grads_b = _grads(_recipe(tmp_path, kind, cached, tiny_modernbert, triples_file), features)
    assert loss_a == pytest.approx(loss_b, rel=1e-4, abs=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-3, atol=1e-5)


def _features(model, rows: list[dict]) -> list[dict]:
    """The trainer's own collation of ``rows`` (prompts as the trainer gets them), split per column."""
    from mbert_retrieval.training.arguments import column_prompts
    from mbert_retrieval.training.trainer import trainer_classes

    trainer_cls, _ = trainer_classes("colbert" if type(model).__name__ == "MultiVectorEncoder" else "dense")
    names = list(rows[0])
    collate = trainer_cls.data_collator_class(preprocess_fn=model.preprocess, prompts=column_prompts(model, names))
    batch = collate(rows)
    return [{k.removeprefix(f"{n}_"): v for k, v in batch.items() if k.startswith(f"{n}_")} for n in names]


def test_colbert_training_batches_carry_the_markers(tmp_path: Path, tiny_modernbert: str, triples_file: Path) -> None:
    """The trainer is given the [Q]/[D] prompts (sentence-transformers' trainers apply only those they are
    given): each query starts with [CLS] [Q] and is expanded to query_length; documents start with [D]."""
    model = build_model(_recipe(tmp_path, "colbert", "contrastive", tiny_modernbert, triples_file))
    q, p, _ = _features(model, [{"query": "sort a list", "positive": "def f(x): return sorted(x)", "negative": "x"}])
    tok = model.tokenizer
    assert tok.convert_ids_to_tokens(q["input_ids"][0, :2].tolist()) == ["[CLS]", "[Q] "]
    assert tok.convert_ids_to_tokens(p["input_ids"][0, :2].tolist()) == ["[CLS]", "[D] "]
    assert q["input_ids"].shape[1] == 32  # expanded with [MASK] to the default query_length
    assert (q["input_ids"][0] == tok.mask_token_id).sum() > 20


def test_colbert_distillation_is_pylates(tmp_path: Path, tiny_modernbert: str, data_dir: Path) -> None:
    """``distillation`` computes PyLate 1.6's ``Distillation`` loss: KL(teacher || student) over each query's
    candidates, the student's MaxSim scores min-max normalised per query (PyLate's normalize_scores),
    batch mean. Checked against that formula written out here."""
    kd = tmp_path / "kd.jsonl"
    kd.write_text(
        json.dumps({"query": "sort a list", "documents": ["sorted(x)", "open(f)", "x.sort()"], "scores": [3, 1, 2]})
        + "\n"
        + json.dumps({"query": "read a file", "documents": ["open(f).read()", "x", "readlines"], "scores": [5, 0, 4]})
        + "\n"
    )
    path = tmp_path / "kd.yaml"
    path.write_text(
        RECIPE.format(kind="colbert", loss="distillation", base=tiny_modernbert, data=kd, out=tmp_path / "o").replace(
            "{source: triples, path: " + str(kd) + "}", "{source: distillation, path: " + str(kd) + ", n_ways: 3}"
        )
    )
    recipe = load_recipe(path)
    from mbert_retrieval.training.data import load_train_data

    model = build_model(recipe)
    data = load_train_data(recipe)
    rows = [{c: data[i][c] for c in data.column_names if c != "scores"} for i in range(len(data))]
    features = _features(model, rows)
    labels = torch.tensor([data[i]["scores"] for i in range(len(data))], dtype=torch.float32)
    loss = make_loss(recipe, model)(features, labels)

    with torch.no_grad():
        out = [model(dict(f), task=f["task"]) for f in features]
        q = out[0]["token_embeddings"] * out[0]["attention_mask"][..., None]
        scores = torch.stack(
            [
                torch.stack(
                    [
                        (q[i] @ (o["token_embeddings"][i][o["attention_mask"][i].bool()]).T).max(dim=1).values.sum()
                        for o in out[1:]
                    ]
                )
                for i in range(len(rows))
            ]
        )
        low, high = scores.min(1, keepdim=True).values, scores.max(1, keepdim=True).values
        student = torch.log_softmax((scores - low) / (high - low + 1e-8), dim=-1)
        teacher = torch.log_softmax(labels, dim=-1)
        expected = torch.nn.functional.kl_div(student, teacher, reduction="batchmean", log_target=True)
    assert float(loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)


def test_killed_training_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_modernbert: str, triples_file: Path, monkeypatch
) -> None:
    from sentence_transformers import SentenceTransformerTrainer

    from mbert_retrieval.cli.app import main

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
