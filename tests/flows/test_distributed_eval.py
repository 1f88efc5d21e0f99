"""`torchrun --nproc_per_node 2 ... eval` on CPU (gloo): the ranks split the corpus encoding, rank 0
evaluates from the cache, and results.json's metrics equal the single-process eval's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbert_retrieval.cli.app import main
from mbert_retrieval.results.runs import read_run


def _torchrun(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    return subprocess.run(
        [*cmd, "mbert_retrieval", *argv], capture_output=True, text=True, env=env, timeout=900, cwd=cwd
    )


@pytest.mark.parametrize("kind", ["dense", pytest.param("colbert", marks=pytest.mark.slow)])
def test_two_gloo_processes_give_the_same_results(
    tmp_path: Path, data_dir: Path, tiny_modernbert: str, kind: str
) -> None:
    common = ["eval", "--beir", str(data_dir / "cosqa-dev"), "--model", tiny_modernbert, "--kind", kind]
    common += ["--shard-size", "100", "--no-progress"]  # 552 documents: 6 shards, 3 per rank
    if kind == "colbert":
        common += ["--spec", "exact-maxsim", "--document-length", "64"]
    assert main([*common, "--out", str(tmp_path / "single")]) == 0

    proc = _torchrun([*common, "--out", str(tmp_path / "dist")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0/2 holds shards [0, 2, 4]" in proc.stderr
    assert "rank 1/2 holds shards [1, 3, 5]" in proc.stderr
    assert proc.stdout.count("| cosqa-dev |") == 1  # only rank 0 reports

    single = json.loads((tmp_path / "single" / "results.json").read_text())
    dist = json.loads((tmp_path / "dist" / "results.json").read_text())
    assert dist["metrics"] == single["metrics"]
    assert dist["encoder"]["fingerprint"] == single["encoder"]["fingerprint"]
    # the same hits; scores within float noise (torchrun's ranks run with OMP_NUM_THREADS=1, this process not)
    a, b = (read_run(tmp_path / name / "runs" / "cosqa-dev.trec") for name in ("single", "dist"))
    assert a.keys() == b.keys()
    for qid in a:
        assert a[qid].keys() == b[qid].keys()
        assert all(abs(a[qid][d] - b[qid][d]) < 1e-5 for d in a[qid])
    shards = sorted(p.name for p in (tmp_path / "dist" / "cache").rglob("shard-*"))
    assert len(shards) == 6


def test_torchrun_refuses_what_has_no_corpus_encoding(tmp_path: Path, data_dir: Path) -> None:
    proc = _torchrun(
        ["eval", "--beir", str(data_dir / "cosqa-dev"), "--model", "bm25", "--out", str(tmp_path / "o")], tmp_path
    )
    assert proc.returncode != 0
    assert "error: torchrun splits the corpus encoding of a model" in proc.stderr
