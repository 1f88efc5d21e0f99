"""The resumable, sharded encoding of a dense index build or add, and filling a FAISS index from it.

A corpus is cut into shards of ``shard_size`` rows, each encoded into its own atomic ``.npy`` file
under a work folder (``OUT.partial/shards/``, through ``cache.iter_document_embeddings``) and
recorded in ``build.json``: a killed build leaves complete shards only, and the next run encodes just
the missing ones. Under ``torchrun`` every rank encodes the shards ``s`` with ``s % world_size ==
rank``; rank 0 then trains the quantiser on a seeded sample drawn across all shards and adds the
shards one by one (memory-mapped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.core.distributed import Distributed
from mbert_retrieval.core.io import write_json
from mbert_retrieval.core.types import plural
from mbert_retrieval.data.corpus import Corpus
from mbert_retrieval.encoders.cache import DEFAULT_SHARD_SIZE, iter_document_embeddings

log = logging.getLogger(__name__)

BUILD_FILE = "build.json"
SHARD_SIZE = DEFAULT_SHARD_SIZE["dense"]


def now() -> str:
    """The time now (UTC, to the second), as manifests and ``build.json`` record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Shards:
    """The corpus cut into shards of ``shard_size`` rows; shard ``s`` is cached under ``work/shards/s``."""

    ids: Sequence[str]
    texts: Sequence[str]
    work_dir: Path
    shard_size: int
    fingerprint: str
    dim: int
    encoded: list[int] = field(default_factory=list)  # shards this process encoded (not read back)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def n_shards(self) -> int:
        return max(1, -(-self.n // self.shard_size))

    def rows(self, s: int) -> slice:
        return slice(s * self.shard_size, min(self.n, (s + 1) * self.shard_size))

    def get(self, s: int, encode: Any = None) -> np.ndarray:
        """Shard ``s``'s embeddings: read from its file (memory-mapped), or encoded with ``encode``."""
        rows = self.rows(s)

        def encode_shard(texts: Sequence[str], desc: str) -> np.ndarray:
            if encode is None:
                raise RuntimeError(f"shard {s} is missing from {self.work_dir}")
            self.encoded.append(s)
            return encode(texts, desc)

        ((_, emb),) = iter_document_embeddings(
            self.ids[rows],
            self.texts[rows],
            encode_shard,
            encoder_fingerprint=self.fingerprint,
            dim=self.dim,
            cache_dir=self.work_dir / "shards" / f"{s:05d}",
            shard_size=rows.stop - rows.start,
            label=f"documents [shard {s + 1}/{self.n_shards}]",
        )
        return emb

    def iter(self, encode: Any = None) -> Iterator[tuple[slice, np.ndarray]]:
        for s in range(self.n_shards):
            yield self.rows(s), self.get(s, encode)

    def sample(self, size: int, seed: int) -> np.ndarray:
        """A seeded sample of ``size`` rows drawn across all shards (in corpus order)."""
        size = min(size, self.n)
        pick = np.sort(np.random.default_rng(seed).choice(self.n, size, replace=False))
        parts = []
        for s in range(self.n_shards):
            rows = self.rows(s)
            lo, hi = np.searchsorted(pick, [rows.start, rows.stop])
            if hi > lo:
                parts.append(np.asarray(self.get(s)[pick[lo:hi] - rows.start], dtype=np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def prepare_work_dir(work_dir: Path, state: dict[str, Any], shard_size: int | None) -> int:
    """Create or reuse the work folder; returns the shard size (an unfinished build's, when resuming)."""
    build_file = work_dir / BUILD_FILE
    previous: dict[str, Any] | None = None
    if build_file.is_file():
        try:
            previous = json.loads(build_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            previous = None
    same = previous is not None and all(previous.get(k) == v for k, v in state.items())
    if same and shard_size is None:
        shard_size = int(previous["shard_size"])  # type: ignore[index]
    shard_size = shard_size or SHARD_SIZE
    if previous is not None and (work_dir / "shards").is_dir():
        if not same or previous.get("shard_size") != shard_size:
            what = "another corpus or model" if not same else f"shard size {previous.get('shard_size')}"
            log.warning("%s holds an unfinished build with %s: discarded", work_dir, what)
            shutil.rmtree(work_dir / "shards")
        else:
            done = sum(1 for _ in (work_dir / "shards").glob("*/*/shard-*.npy"))
            log.info("resuming the unfinished work in %s: %s already encoded", work_dir, plural(done, "shard"))
    write_json(build_file, {**state, "shard_size": shard_size, "started": (previous or {}).get("started", now())})
    return shard_size


def remove_work_dir(work_dir: Path) -> None:
    """Remove what a build put in ``work_dir`` (and the folder itself when that leaves it empty)."""
    shutil.rmtree(work_dir / "shards", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (work_dir / BUILD_FILE).unlink()
    with contextlib.suppress(OSError):
        work_dir.rmdir()


def _read_shard_size(work_dir: Path, state: dict[str, Any], shard_size: int | None) -> int:
    """What rank 0's ``prepare_work_dir`` decided (read by the other ranks after the barrier)."""
    try:
        recorded = json.loads((work_dir / BUILD_FILE).read_text(encoding="utf-8"))
        if all(recorded.get(k) == v for k, v in state.items()):
            return int(recorded["shard_size"])
    except (OSError, ValueError, KeyError):
        pass
    return shard_size or SHARD_SIZE  # pragma: no cover - rank 0 always writes it first


def encode_in_shards(
    corpus: Corpus,
    encoder: Any,
    work_dir: Path,
    *,
    shard_size: int | None,
    dist: Distributed,
) -> Shards:
    """Encode this rank's shards of ``corpus`` into ``work_dir`` (finished shards are kept, not redone)."""
    fingerprint = encoder.fingerprint()
    state = {"encoder": fingerprint, "n_docs": len(corpus)}
    if dist.is_main:
        shard_size = prepare_work_dir(work_dir, state, shard_size)
    dist.barrier()
    if not dist.is_main:
        shard_size = _read_shard_size(work_dir, state, shard_size)
    assert shard_size is not None
    shards = Shards(corpus.ids, corpus.texts, work_dir, shard_size, fingerprint, encoder.dim)
    mine = [s for s in range(shards.n_shards) if s % dist.world_size == dist.rank]
    for s in mine:
        shards.get(s, encoder.encode_documents)
    if dist.world_size > 1:
        log.info("rank %d/%d: shards %s (%d encoded now)", dist.rank, dist.world_size, mine, len(shards.encoded))
    reused = len(mine) - len(shards.encoded)
    if reused:
        log.info("%d of %s reused from an earlier, interrupted run", reused, plural(len(mine), "shard"))
    dist.barrier()
    return shards


def fill_index(index: Any, shards: Shards, *, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Train ``index`` (if it needs it) on a seeded sample across all shards, then add every shard.

    Returns the seconds spent training and adding. Shards are read from disk (memory-mapped), so
    call this after ``encode_in_shards``. Also usable for an index built for an eval run.
    """
    from tqdm.auto import tqdm

    seconds = {"train": 0.0, "add": 0.0}
    if not index.is_trained:
        t = time.perf_counter()
        sample = shards.sample(index.spec.train_sample, seed)
        log.info(
            "training %s on %s sampled across %s",
            index.factory,
            plural(len(sample), "vector"),
            plural(shards.n_shards, "shard"),
        )
        index.train(sample, seed=seed)
        seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    with tqdm(total=shards.n, desc=f"add to {index.factory}", unit="doc", disable=not progress, leave=False) as bar:
        for rows, emb in shards.iter():
            index.add(list(shards.ids[rows]), emb)
            bar.update(rows.stop - rows.start)
    seconds["add"] = time.perf_counter() - t
    return seconds
