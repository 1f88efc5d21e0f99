"""Trainer checkpoints that are known to be complete, and where ``--resume`` starts from.

The HF trainer writes checkpoint-N in place (weights, optimizer, RNG, trainer_state.json), so a run
killed mid-save leaves a folder that looks like a checkpoint. Ours are marked complete only after
the trainer has written everything: COMPLETE_MARKER lists every file with its size. Resume takes the
newest checkpoint whose marker matches its files; unmarked or mismatching ones are renamed to
``incomplete-checkpoint-N`` (never used, never rotated). Rotation (save_total_limit) is ours too, and
runs only after the new checkpoint is marked, so the last complete checkpoint is never deleted first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.io import write_json

log = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint-complete.json"
CHECKPOINT_PREFIX = "checkpoint-"


def _checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX) or not name[len(CHECKPOINT_PREFIX) :].isdigit():
        return None
    return int(name[len(CHECKPOINT_PREFIX) :])


def mark_checkpoint_complete(folder: Path) -> None:
    """Record every file of a finished checkpoint with its size (written atomically, last)."""
    files = {
        str(f.relative_to(folder)): f.stat().st_size
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != COMPLETE_MARKER
    }
    write_json(folder / COMPLETE_MARKER, {"step": _checkpoint_step(folder), "files": files})


def checkpoint_is_complete(folder: Path) -> bool:
    """A marker naming this step, every listed file present at its recorded size, and a readable
    ``trainer_state.json`` at the same global step."""
    try:
        marker = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        files = marker["files"]
        if marker.get("step") != _checkpoint_step(folder) or state.get("global_step") != marker["step"]:
            return False
        if not any(name.endswith((".safetensors", ".bin")) for name in files):
            return False
        return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    found = [(step, p) for p in folder.iterdir() if p.is_dir() and (step := _checkpoint_step(p)) is not None]
    return [p for _, p in sorted(found) if checkpoint_is_complete(p)]


def quarantine_incomplete(folder: Path) -> list[Path]:
    """Rename every checkpoint-N that is not complete to incomplete-checkpoint-N[-k]; return the new paths."""
    moved = []
    if not folder.is_dir():
        return moved
    for p in sorted(folder.iterdir()):
        if p.is_dir() and _checkpoint_step(p) is not None and not checkpoint_is_complete(p):
            target, k = folder / f"incomplete-{p.name}", 1
            while target.exists():
                target, k = folder / f"incomplete-{p.name}-{k}", k + 1
            os.replace(p, target)
            log.warning("%s is incomplete (a save was interrupted): moved to %s, not used", p, target.name)
            moved.append(target)
    return moved


def rotate_checkpoints(folder: Path, keep: int, protect: Path | None = None) -> None:
    """Delete the oldest complete checkpoints beyond ``keep`` (never ``protect``, the best one)."""
    done = complete_checkpoints(folder)
    for p in done[: max(0, len(done) - keep)]:
        if protect is None or p.resolve() != protect.resolve():
            shutil.rmtree(p, ignore_errors=True)


def prepare_checkpoints(checkpoints: Path, *, resume: bool, overwrite: bool, rank: int) -> Path | None:
    """The checkpoint ``--resume`` continues from (half-written ones set aside first), else None after
    making room for a fresh run: an earlier run's checkpoints are removed with ``overwrite`` and refused
    without it. Only rank 0 renames or deletes."""
    if resume:
        if rank == 0:
            quarantine_incomplete(checkpoints)
        done = complete_checkpoints(checkpoints)
        if not done:
            raise ConfigError(f"--resume: no complete checkpoint in {checkpoints}")
        log.info("resuming from %s", done[-1])
        return done[-1]
    if any(checkpoints.glob(f"{CHECKPOINT_PREFIX}*")):
        if not overwrite:
            raise ConfigError(
                f"{checkpoints} holds checkpoints of an earlier run: pass --resume to continue it, "
                "or --overwrite to start over"
            )
        if rank == 0:
            shutil.rmtree(checkpoints)
    return None
