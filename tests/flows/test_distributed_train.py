"""`torchrun --nproc_per_node 2 ... train` on CPU (gloo) matches a single-process run on the same global batch.

What "the same global batch" means with the HF trainer: each rank's dataloader is a shard of one
batch sampler (accelerate's ``BatchSamplerShard``, seeded identically on every rank), so optimizer
step k on 2 ranks sees per-device batches 2k and 2k+1 of the sequence a single process would draw
with the same per-device batch size. Hence:

- without cross-device negatives, 2 ranks x batch B  ==  1 process x batch B x gradient accumulation 2
  (each query scored against the B rows of its own device in both cases; the logged loss is the
  mean of the two per-batch losses, and DDP's mean gradient equals accumulation's);
- with ``loss.gather_across_devices``, 2 ranks x batch B  ==  1 process x batch 2B (every query sees
  all 2B positives and negatives of the step; only 'batch_sampler' keeps a 2B batch equal to two
  consecutive B batches, so the test uses it rather than no_duplicates).

Found here (transformers 5.3, accelerate): with gradient accumulation the logged ``grad_norm`` is
half the 2-rank one, because the loss is divided by the accumulation steps twice (trainer and
accelerate); Adam is scale-invariant and both runs clip at max_grad_norm 1.0, so the updates, and
the losses of the following steps, still agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbert_retrieval.cli.app import main

RECIPE = """\
name: t
kind: dense
output_dir: {out}
model: {{base: {base}, max_seq_length: 32}}
data:
  train: {{source: triples, path: {data}}}
loss: {{name: mnrl}}
training:
  batch_size: 4
  max_steps: 3
  learning_rate: 1.0e-3
  warmup_ratio: 0.0
  logging_steps: 1
  batch_sampler: batch_sampler
"""


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def _torchrun(tmp_path: Path, recipe: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    cmd += ["mbert_retrieval", "train", str(recipe), f"output_dir={out}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)


@pytest.fixture
def recipe(tmp_path: Path, tiny_modernbert: str, data_dir: Path) -> Path:
    lines = (data_dir / "msmarco-triples-sample" / "triples.tsv").read_text(encoding="utf-8").splitlines()[:40]
    data = tmp_path / "triples.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(out=tmp_path / "unused", base=tiny_modernbert, data=data))
    return path


def test_two_gloo_ranks_match_gradient_accumulation(tmp_path: Path, recipe: Path) -> None:
    proc = _torchrun(tmp_path, recipe, tmp_path / "dist")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "devices 2, per_device_batch 4, gradient_accumulation 1, global_batch 8" in proc.stderr
    assert proc.stdout.count("model: ") == 2 and (tmp_path / "dist" / "model" / "modules.json").is_file()
    assert main([*_single(recipe, tmp_path / "single"), "training.gradient_accumulation_steps=2"]) == 0
    dist, single = _losses(tmp_path / "dist"), _losses(tmp_path / "single")
    assert len(dist) == len(single) == 3
    assert dist == pytest.approx(single, rel=1e-4, abs=1e-5)  # step 1 (same weights) and 2-3 (same updates)


@pytest.mark.slow
def test_cross_device_negatives_match_the_doubled_batch(tmp_path: Path, recipe: Path) -> None:
    proc = _torchrun(tmp_path, recipe, tmp_path / "gather", "loss.gather_across_devices=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "global_batch 8, in_batch_candidates_per_query 8" in proc.stderr
    assert main([*_single(recipe, tmp_path / "single8"), "training.batch_size=8"]) == 0
    assert main([*_single(recipe, tmp_path / "single4"), "training.gradient_accumulation_steps=2"]) == 0
    gathered, doubled, local = (_losses(tmp_path / d) for d in ("gather", "single8", "single4"))
    assert gathered == pytest.approx(doubled, rel=1e-4, abs=1e-5)
    assert abs(gathered[0] - local[0]) > 1e-3  # gathering really changed what each query is scored against


def _single(recipe: Path, out: Path) -> list[str]:
    return ["train", str(recipe), f"output_dir={out}"]
