"""Checkpoints: only complete ones are resumed from; a half-written checkpoint-N is set aside."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mbert_retrieval.cli.app import main
from mbert_retrieval.training.checkpoints import (
    COMPLETE_MARKER,
    checkpoint_is_complete,
    complete_checkpoints,
    mark_checkpoint_complete,
    quarantine_incomplete,
    rotate_checkpoints,
)

RECIPE = """\
name: t
kind: dense
output_dir: {out}
model: {{base: {base}, max_seq_length: 32}}
data:
  train: {{source: triples, path: {data}}}
loss: {{name: mnrl}}
training: {{batch_size: 4, learning_rate: 1.0e-4, warmup_ratio: 0.0, logging_steps: 1, save_total_limit: 2}}
"""


def _fake_checkpoint(folder: Path, step: int, *, marked: bool = True) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 100)
    (ckpt / "optimizer.pt").write_bytes(b"o" * 50)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if marked:
        mark_checkpoint_complete(ckpt)
    return ckpt


def test_completeness_checks(tmp_path: Path) -> None:
    good = _fake_checkpoint(tmp_path, 2)
    assert checkpoint_is_complete(good)
    unmarked = _fake_checkpoint(tmp_path, 4, marked=False)
    assert not checkpoint_is_complete(unmarked)
    truncated = _fake_checkpoint(tmp_path, 6)
    (truncated / "model.safetensors").write_bytes(b"w" * 10)  # changed after the marker
    assert not checkpoint_is_complete(truncated)
    wrong_state = _fake_checkpoint(tmp_path, 8)
    (wrong_state / "trainer_state.json").write_text('{"global_step": 7')  # half-written JSON
    assert not checkpoint_is_complete(wrong_state)
    assert complete_checkpoints(tmp_path) == [good]
    moved = quarantine_incomplete(tmp_path)
    assert sorted(p.name for p in moved) == [
        "incomplete-checkpoint-4",
        "incomplete-checkpoint-6",
        "incomplete-checkpoint-8",
    ]
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "checkpoint-2"
    for step in (10, 12, 14):
        _fake_checkpoint(tmp_path, step)
    rotate_checkpoints(tmp_path, keep=2, protect=good)  # the best one (checkpoint-2) survives rotation
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-12", "checkpoint-14"]


def test_resume_skips_a_half_written_checkpoint(
    tmp_path: Path, tiny_modernbert: str, data_dir: Path, monkeypatch
) -> None:
    from sentence_transformers import SentenceTransformerTrainer

    lines = (data_dir / "msmarco-triples-sample" / "triples.tsv").read_text(encoding="utf-8").splitlines()[:40]
    data = tmp_path / "triples.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=out, base=tiny_modernbert, data=data))
    argv = ["train", str(recipe), "training.max_steps=6", "training.save_steps=2"]

    real_step = SentenceTransformerTrainer.training_step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # killed during step 5: checkpoint-2 and checkpoint-4 are complete
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", dying_step)
    assert main(argv) == 130
    ckpts = out / "checkpoints"
    assert [p.name for p in complete_checkpoints(ckpts)] == ["checkpoint-2", "checkpoint-4"]
    assert all((p / COMPLETE_MARKER).is_file() for p in complete_checkpoints(ckpts))
    # what a kill during the save of step 6 leaves: the folder, a trainer state, truncated weights, no marker
    partial = ckpts / "checkpoint-6"
    shutil.copytree(ckpts / "checkpoint-4", partial)
    (partial / COMPLETE_MARKER).unlink()
    (partial / "trainer_state.json").write_text(
        (partial / "trainer_state.json").read_text().replace('"global_step": 4', '"global_step": 6')
    )
    weights = partial / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    assert main(argv) == 1  # without --resume an earlier run's checkpoints are not silently overwritten
    resumed = {"n": 0}

    def counting_step(self, *args, **kwargs):
        resumed["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", counting_step)
    assert main([*argv, "--resume"]) == 0
    assert resumed["n"] == 2  # steps 5 and 6, from checkpoint-4, not from the half-written checkpoint-6
    assert (ckpts / "incomplete-checkpoint-6").is_dir()
    assert [p.name for p in complete_checkpoints(ckpts)] == ["checkpoint-4", "checkpoint-6"]  # limit 2
    assert (out / "model" / "modules.json").is_file() and not list(out.glob(".model.*"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert sorted({row["step"] for row in log if "loss" in row}) == [1, 2, 3, 4, 5, 6]

    assert main([*argv, "training.max_steps=2", "--overwrite"]) == 0  # start over: old checkpoints go
    assert [p.name for p in complete_checkpoints(ckpts)] == ["checkpoint-2"]
    assert not (ckpts / "incomplete-checkpoint-6").exists()
