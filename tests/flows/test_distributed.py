"""`torchrun --nproc_per_node 2 ... index build` on CPU (gloo) equals the single-process build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mbert_retrieval.flows.index_build import build_index
from mbert_retrieval.indexes.faiss_index import FaissIndex


def _entry_module() -> str:
    return "mbert_retrieval"


def test_two_gloo_processes_build_the_same_index(tmp_path: Path, tiny_modernbert: str, capfd) -> None:
    docs = [
        {"_id": f"d{i}", "text": f"document number {i} about topic {i % 5} and word {i * 7 % 11}"} for i in range(37)
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    common = ["--model", tiny_modernbert, "--corpus", str(corpus), "--spec", "faiss-flat", "--shard-size", "5"]

    single = build_index(tiny_modernbert, corpus, "faiss-flat", tmp_path / "single", shard_size=5, progress=False)
    assert single is not None and single.encoded_shards == 8

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    cmd += [_entry_module(), "index", "build", *common, "--out", str(tmp_path / "dist"), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0/2: shards [0, 2, 4, 6] (4 encoded now)" in proc.stderr
    assert "rank 1/2: shards [1, 3, 5, 7] (4 encoded now)" in proc.stderr
    assert proc.stdout.count("built Flat index of 37 documents") == 1  # only rank 0 writes and reports

    a, b = FaissIndex.load(tmp_path / "single"), FaissIndex.load(tmp_path / "dist")
    assert a.doc_ids == b.doc_ids == [d["_id"] for d in docs]
    np.testing.assert_allclose(a.vectors(), b.vectors(), atol=1e-5)
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert manifest["build"]["world_size"] == 2 and manifest["build"]["n_shards"] == 8
    assert (
        manifest["encoder"]["fingerprint"]
        == json.loads((tmp_path / "single" / "manifest.json").read_text())["encoder"]["fingerprint"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "dist", "single"]
