"""The README's Python section runs as written: the block is read from README.md, only its model and
data line is pointed at local copies (the real all-MiniLM-L6-v2 weights, the CoSQA BEIR folder) and the
training recipe is cut to two steps; everything else executes verbatim, in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

MODEL_LINE = re.compile(r'^MODEL, DATA = "[^"]+", "[^"]+"(.*)$', re.M)


def readme_python_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's 'From Python' section should hold one python block"
    return blocks[0]


def test_readme_python_block_runs(tmp_path: Path, data_dir: Path, minilm_path: str) -> None:
    block = readme_python_block()
    assert MODEL_LINE.search(block), "the block's MODEL, DATA line changed: update this test"
    block = MODEL_LINE.sub(f"MODEL, DATA = {minilm_path!r}, {str(data_dir / 'cosqa-dev')!r}", block)
    train_overrides = '"output_dir=out/train"]'
    assert train_overrides in block, "the block's recipe overrides changed: update this test"
    block = block.replace(train_overrides, '"output_dir=out/train", "training.max_steps=2"]')
    script = tmp_path / "readme_block.py"
    script.write_text(block + "\nimport json\nprint('METRICS', json.dumps(results['metrics']))\n", encoding="utf-8")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "(1, 384)"
    hits = lines[1:4]
    assert [h.split()[0] for h in hits] == ["1", "2", "3"], proc.stdout
    metrics = json.loads(next(ln for ln in lines if ln.startswith("METRICS "))[len("METRICS ") :])
    # the figure the README states for this run ("nDCG@10 0.886"), within the CPU's rounding
    assert abs(metrics["cosqa-dev"]["nDCG@10"] - 0.886) < 0.001, metrics
    assert (tmp_path / "out" / "eval" / "results.json").is_file()
    assert (tmp_path / "out" / "train" / "model" / "config.json").is_file()
    assert lines[-2] == "out/train/model", lines  # what train() returns
