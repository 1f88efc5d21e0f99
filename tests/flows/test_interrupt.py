"""Kill a real ``python -m mbert_retrieval`` process (SIGTERM, SIGKILL) half-way through index build,
eval embedding and training; the next run must resume or start clean, and nothing half-written may
be read as complete (no index manifest, results.json complete or absent, checkpoints complete).

The killed process is polled until it is visibly mid-way (a first embedding shard on disk, the second
dataset's embedding started, a first checkpoint saved), then killed; the resumed run is in-process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mbert_retrieval.cli.app import main
from mbert_retrieval.core.lock import lock_path

WORDS = [
    "python",
    "function",
    "class",
    "loop",
    "error",
    "module",
    "string",
    "value",
    "index",
    "path",
    "sort",
    "read",
    "file",
    "json",
    "parse",
    "socket",
]
SLOW = pytest.mark.slow  # each kill test takes 15-60 s on 2 busy cores: one signal per flow runs by default


def signals(default: int) -> list:
    """SIGTERM and SIGKILL; the one that is not ``default`` is marked slow."""
    return [
        pytest.param(sig, id=sig.name, marks=() if sig == default else SLOW) for sig in (signal.SIGTERM, signal.SIGKILL)
    ]


def corpus(n: int, seed: int = 0, prefix: str = "d") -> list[dict]:
    rng = random.Random(seed)
    return [{"_id": f"{prefix}{i}", "text": " ".join(rng.choice(WORDS) for _ in range(24))} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def spawn(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "mbert_retrieval", *argv], stdout=f, stderr=f, env=env)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], sig: int, log: Path, timeout: float = 300) -> bool:
    """Send ``sig`` to ``proc`` as soon as ``ready()``; fail if the process ends first. True when the
    process died of the signal (SIGKILL, or SIGTERM without a handler); False when it handled SIGTERM
    as an interrupt (clean-up ran, exit 130)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the process ended (exit {proc.returncode}) before it was mid-way:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"not mid-way after {timeout} s:\n{log.read_text()}")
            time.sleep(0.02)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert code == -sig or (sig == signal.SIGTERM and code == 130), (code, log.read_text())
        return code == -sig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def complete_npy(path: Path) -> bool:
    try:
        np.load(path, mmap_mode="r")
    except (ValueError, OSError):
        return False
    return True


@pytest.mark.parametrize("sig", signals(default=signal.SIGKILL))
def test_killed_index_build_resumes(sig: int, tmp_path: Path, tiny_modernbert: str, capsys) -> None:
    docs = corpus(200)
    path = write_jsonl(tmp_path / "corpus.jsonl", docs)
    out = tmp_path / "idx"
    argv = ["index", "build", "--model", tiny_modernbert, "--corpus", str(path), "--spec", "faiss-flat"]
    argv += ["--out", str(out), "--shard-size", "20", "--batch-size", "20", "--no-progress"]
    log = tmp_path / "killed.log"
    shards = tmp_path / "idx.partial" / "shards"
    died = kill_when(spawn(argv, log), lambda: any(shards.glob("*/*/shard-*.npy")), sig, log)

    assert not out.exists()  # no index folder, so no manifest that could be read as a finished index
    done = sorted(shards.glob("*/*/shard-*.npy"))
    assert 1 <= len(done) < 10 and all(complete_npy(p) for p in done)  # only complete shards carry the name
    assert lock_path(out).is_file() == died  # left behind only by a holder that could not clean up

    assert main(argv) == 0
    captured = capsys.readouterr()
    assert ("removing the stale lock of a run that is gone" in captured.err) == died
    assert f"{len(done)} reused from an interrupted run" in captured.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_docs"] == 200 and manifest["build"]["n_shards"] == 10
    assert (out / "doc_ids.txt").read_text().split() == [d["_id"] for d in docs]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx", "killed.log"]  # no lock, tmp, work


@pytest.mark.parametrize("sig", signals(default=signal.SIGTERM))
def test_killed_eval_keeps_finished_datasets_and_resumes(
    sig: int, tmp_path: Path, tiny_modernbert: str, capsys
) -> None:
    qrels = "query-id\tcorpus-id\tscore\n{p}q0\t{p}3\t1\n{p}q1\t{p}7\t1\n"
    for name, n in (("small", 30), ("large", 200)):
        folder = tmp_path / "data" / name
        write_jsonl(folder / "corpus.jsonl", corpus(n, seed=n, prefix=name))
        write_jsonl(
            folder / "queries.jsonl", [{"_id": f"{name}q{i}", "text": WORDS[i] + " " + WORDS[i + 3]} for i in range(2)]
        )
        (folder / "qrels").mkdir()
        (folder / "qrels" / "test.tsv").write_text(qrels.format(p=name))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: two\ndatasets:\n  - {name: small}\n  - {name: large}\n")
    out = tmp_path / "out"
    argv = ["eval", "--suite", str(suite), "--data-dir", str(tmp_path / "data"), "--model", tiny_modernbert]
    argv += ["--out", str(out), "--batch-size", "20", "--no-progress"]
    log = tmp_path / "killed.log"

    def large_embedding_started() -> bool:  # the cache writes meta.json before it encodes a corpus
        return len(list((out / "cache").glob("*/meta.json"))) == 2

    kill_when(spawn(argv, log), large_embedding_started, sig, log)

    results = json.loads((out / "results.json").read_text())  # complete JSON: written atomically
    assert list(results["metrics"]) == ["small"] and list(results["datasets"]) == ["small"]
    assert (out / "runs" / "small.trec").is_file() and not (out / "runs" / "large.trec").exists()
    assert not (out / "results.md").exists()  # the summary is written only when every dataset is done
    assert all(complete_npy(p) for p in (out / "cache").glob("*/shard-*.npy"))

    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "small: already in" in captured.err
    final = json.loads((out / "results.json").read_text())
    assert list(final["metrics"]) == ["small", "large"]
    assert final["metrics"]["small"] == results["metrics"]["small"]
    assert final["datasets"]["small"]["finished"] == results["datasets"]["small"]["finished"]  # not recomputed
    assert (out / "results.md").is_file() and (out / "runs" / "large.trec").is_file()


TRIPLES = [
    (f"how to {a} {b}", f"You {a} the {b} like this.", f"The {b} has nothing to do with it.")
    for a in WORDS[:6]
    for b in WORDS[6:]
]


def _recipe(tmp_path: Path, model: str) -> Path:
    data = tmp_path / "triples.tsv"
    data.write_text("".join("\t".join(t) + "\n" for t in TRIPLES), encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: kill\nkind: dense\noutput_dir: {tmp_path / 'run'}\nseed: 7\n"
        f"model: {{base: {model}, max_seq_length: 32}}\n"
        f"data:\n  train: {{source: triples, path: {data}}}\nloss: {{name: mnrl}}\n"
        "training: {max_steps: 24, batch_size: 8, save_steps: 3, save_total_limit: 3, logging_steps: 1, "
        "warmup_ratio: 0.0}\n"
    )
    return recipe


def _complete_checkpoints(run: Path) -> list[Path]:
    """Checkpoints the trainer finished (the completeness marker of training.checkpoints matches), oldest first."""
    from mbert_retrieval.training.checkpoints import complete_checkpoints

    return complete_checkpoints(run / "checkpoints")


@pytest.mark.parametrize("sig", signals(default=signal.SIGKILL))
def test_killed_training_resumes_from_its_last_checkpoint(sig: int, tmp_path: Path, tiny_modernbert: str) -> None:
    recipe = _recipe(tmp_path, tiny_modernbert)
    run = tmp_path / "run"
    log = tmp_path / "killed.log"
    kill_when(spawn(["train", str(recipe)], log), lambda: bool(_complete_checkpoints(run)), sig, log)

    assert not (run / "model").exists()  # no final model from a killed run
    steps = sorted(
        json.loads((d / "trainer_state.json").read_text())["global_step"] for d in _complete_checkpoints(run)
    )
    assert steps and steps[-1] < 24

    assert main(["train", str(recipe), "--resume"]) == 0
    state = json.loads((_complete_checkpoints(run)[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == 24
    history = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    logged = [row["step"] for row in history if "loss" in row]
    assert logged == list(range(1, 25))  # the killed run's steps kept, the rest trained once, none twice
    assert (run / "model" / "model.safetensors").is_file() and not (run / ".model.tmp").exists()


def test_resume_skips_a_checkpoint_killed_while_saving(tmp_path: Path, tiny_modernbert: str) -> None:
    recipe = _recipe(tmp_path, tiny_modernbert)
    run = tmp_path / "run"
    assert main(["train", str(recipe), "training.max_steps=3"]) == 0
    done = run / "checkpoints" / "checkpoint-3"
    partial = run / "checkpoints" / "checkpoint-6"  # what SIGKILL during the save of step 6 leaves
    partial.mkdir()
    weights = (done / "model.safetensors").read_bytes()
    (partial / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert main(["train", str(recipe), "training.max_steps=6", "--resume", "--overwrite"]) == 0
    assert json.loads((_complete_checkpoints(run)[-1] / "trainer_state.json").read_text())["global_step"] == 6
    last = _complete_checkpoints(run)[-1]  # the half-written checkpoint-6 was set aside and saved again, whole
    assert last.name == "checkpoint-6" and (last / "model.safetensors").stat().st_size == len(weights)
