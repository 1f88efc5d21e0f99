"""Model + corpus -> a saved FAISS index: streaming, resumable, optionally sharded across processes.

``build_index`` (``mbert-retrieval index build``):

1. the corpus is read and checked (``data.corpus``), the spec resolved (``catalog``), the output
   checked: an existing index is replaced only with ``overwrite``, and only once the new one is
   complete;
2. documents are encoded in shards of ``shard_size`` rows into a work folder (default
   ``OUT.partial/``), each shard an atomic ``.npy`` file through ``cache.iter_document_embeddings``;
   a killed build leaves complete shards only, and the next run encodes just the missing ones.
   Under ``torchrun`` every rank encodes the shards ``s`` with ``s % world_size == rank``;
3. rank 0 trains the quantiser (IVF, PQ, SQ) on a seeded sample drawn across all shards, adds the
   shards one by one (memory-mapped) and writes the index, ``doc_ids.txt``, text snippets and
   ``manifest.json`` into a temporary sibling folder, which is then renamed onto ``OUT``.

``add_documents`` (``index add``) appends documents with the encoder the manifest records, the
same way (shards, temporary copy, rename). See ``docs/indexing.md`` for the on-disk format.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mbert_retrieval.config import EncoderConfig, FaissSpec, format_validation_error
from mbert_retrieval.core.checkpoint import check_checkpoint
from mbert_retrieval.core.distributed import Distributed, distributed_context
from mbert_retrieval.core.errors import ConfigError, DataError, OutputExistsError
from mbert_retrieval.core.io import (
    recover_interrupted_swap,
    remove_stale_staging,
    staging_dir,
    write_json,
)
from mbert_retrieval.core.lock import output_lock_if_main
from mbert_retrieval.core.types import plural
from mbert_retrieval.core.versions import versions
from mbert_retrieval.data.corpus import Corpus, load_corpus_input
from mbert_retrieval.encoders import encoder_from_config, log_truncated
from mbert_retrieval.encoders.cache import DEFAULT_SHARD_SIZE, iter_document_embeddings
from mbert_retrieval.encoders.record import encoder_record, recorded_model
from mbert_retrieval.indexes.manifest import MANIFEST_FILE, check_encoder, read_manifest
from mbert_retrieval.indexes.snippets import (
    SNIPPET_OFFSETS_FILE,
    SNIPPETS_FILE,
    Snippets,
    snippet_lines,
    write_snippets,
)
from mbert_retrieval.retrieval.rebuild import encoder_from_manifest

log = logging.getLogger(__name__)

BUILD_FILE = "build.json"
SHARD_SIZE = DEFAULT_SHARD_SIZE["dense"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Embedding shards in a work folder


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
    write_json(build_file, {**state, "shard_size": shard_size, "started": (previous or {}).get("started", _now())})
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


# --------------------------------------------------------------------------------------------
# Filling the index


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


# --------------------------------------------------------------------------------------------
# Output folders


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite`` (and never replace a folder that is not an index)."""
    recover_interrupted_swap(out)
    remove_stale_staging(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(
            f"{out} already exists; pass --overwrite to replace it (the old index stays until the new one is complete)"
        )
    if not (out / MANIFEST_FILE).is_file():
        raise OutputExistsError(f"{out} is not an index folder (no {MANIFEST_FILE}); refusing to replace it")


# --------------------------------------------------------------------------------------------
# index build


@dataclass
class BuildResult:
    """What a build or add did (``None`` is returned instead on ranks other than 0)."""

    path: Path
    n_docs: int
    dim: int
    factory: str
    seconds: dict[str, float]
    encoded_shards: int
    reused_shards: int
    added: int = 0
    replaced: int = 0


def resolve_any_spec(spec: Any) -> tuple[str, Any]:
    """A shipped spec name, a spec file path, an ``IndexSpecFile`` or an index spec -> (name, spec)."""
    if isinstance(spec, FaissSpec):
        return spec.type, spec
    if isinstance(spec, str | Path):
        from mbert_retrieval.catalog import load_index_spec

        spec = load_index_spec(spec)
    if hasattr(spec, "index"):
        return spec.name, spec.index
    return spec.kind, spec


def default_work_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.partial"


def build_index(
    model: str | None,
    corpus: str | Path | Corpus,
    spec: Any,
    out: str | Path,
    *,
    encoder: Any = None,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    normalize: bool | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    shard_size: int | None = None,
    work_dir: str | Path | None = None,
    keep_work_dir: bool = False,
    skip_blank: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    use_gpu: bool = True,
    faiss_threads: int | None = None,
    progress: bool = True,
    query_length: int | None = None,
    document_length: int | None = None,
    kind: str | None = None,
) -> BuildResult | None:
    """Encode ``corpus`` with ``model`` and save an index of kind ``spec`` to ``out``.

    A multi-vector spec (PLAID, Voyager, exact MaxSim) goes to ``build_multivector_index`` (a
    ColBERT model; ``query_length`` / ``document_length`` apply there). For FAISS:

    Resumable (finished embedding shards in ``work_dir``, default ``OUT.partial``, are reused) and
    atomic (``out`` is replaced only by a complete index). Under ``torchrun`` every rank encodes
    its slice of the shards and rank 0 writes the index; the other ranks return ``None``.
    ``encoder`` may be given instead of loading ``model`` (its settings are then its own).
    """
    from mbert_retrieval.indexes.faiss_index import FaissIndex, min_train_vectors, set_num_threads

    t_start = time.perf_counter()
    out = Path(out)
    spec_name, any_spec = resolve_any_spec(spec)
    if any_spec.kind != "faiss":
        return build_multivector_index(
            model,
            corpus,
            (spec_name, any_spec),
            out,
            encoder=encoder,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            query_length=query_length,
            document_length=document_length,
            query_prompt=query_prompt,
            document_prompt=document_prompt,
            device=device,
            trust_remote_code=trust_remote_code,
            shard_size=shard_size,
            work_dir=work_dir,
            keep_work_dir=keep_work_dir,
            skip_blank=skip_blank,
            overwrite=overwrite,
            progress=progress,
            kind=kind,
        )
    if kind == "colbert":
        raise ConfigError(
            f"index spec {spec_name!r} is a FAISS index (one vector per document); a ColBERT model needs a "
            "plaid, voyager or exact-maxsim spec"
        )
    set_num_threads(faiss_threads)
    faiss_spec = any_spec
    with output_lock_if_main(out):  # one writer at a time (stale locks of killed runs are taken over)
        check_output(out, overwrite)
        docs = corpus if isinstance(corpus, Corpus) else load_corpus_input(corpus, skip_blank=skip_blank)
        need = min_train_vectors(faiss_spec)
        if need > min(len(docs), faiss_spec.train_sample):
            raise ConfigError(
                f"{faiss_spec.type} ({faiss_spec.factory_string()}) needs at least {need} training vectors; "
                f"the corpus has {plural(len(docs), 'document')} (train_sample {faiss_spec.train_sample}): "
                "lower nlist/nbits in the spec, or use faiss-flat / faiss-hnsw for a corpus this small"
            )
        dist = distributed_context()
        try:
            try:
                cfg = EncoderConfig(
                    model=model or getattr(encoder, "name", "?"),
                    batch_size=batch_size,
                    max_seq_length=max_seq_length,
                    query_prompt=query_prompt,
                    document_prompt=document_prompt,
                    normalize=normalize,
                    device=device or (f"cuda:{dist.local_rank}" if dist.backend == "nccl" else None),
                    trust_remote_code=trust_remote_code,
                )
            except ValueError as e:  # pydantic's ValidationError
                raise ConfigError(f"invalid encoder option: {format_validation_error(e)}") from None  # type: ignore[arg-type]
            if encoder is None:
                if model is None:
                    raise ConfigError("a model (--model) is needed to build an index")
                check_checkpoint(model, trust_remote_code=trust_remote_code)
                encoder = encoder_from_config(cfg, progress=progress and dist.is_main)
            if getattr(encoder, "kind", "dense") != "dense":
                raise ConfigError(
                    f"{cfg.model} is a {encoder.kind} encoder: use a plaid, voyager or exact-maxsim spec for it "
                    f"({spec_name!r} is a FAISS index, one vector per document)"
                )
            FaissIndex(encoder.dim, faiss_spec, use_gpu=False)  # dimension checks (ivf-pq m) before any encoding
            truncated = log_truncated(encoder, docs.texts, docs.source) if dist.is_main else None
            work = Path(work_dir) if work_dir is not None else default_work_dir(out)
            t = time.perf_counter()
            shards = encode_in_shards(docs, encoder, work, shard_size=shard_size, dist=dist)
            seconds = {"encode": time.perf_counter() - t}
            if not dist.is_main:
                return None

            index = FaissIndex(encoder.dim, faiss_spec, use_gpu=use_gpu)
            seconds.update(fill_index(index, shards, seed=seed, progress=progress))
            t = time.perf_counter()
            record = encoder_record(encoder, cfg)
            meta = {
                "spec_name": spec_name,
                "files": {"snippets": SNIPPETS_FILE, "snippet_offsets": SNIPPET_OFFSETS_FILE},
                "encoder": encoder.describe(),
                "encoder_load": record,
                "versions": versions(),
                "build": {
                    "corpus": str(Path(docs.source).resolve()) if Path(docs.source).exists() else docs.source,
                    "corpus_format": docs.format,
                    "corpus_warnings": docs.warnings,
                    "truncated_documents": truncated,
                    "shard_size": shards.shard_size,
                    "n_shards": shards.n_shards,
                    "world_size": dist.world_size,
                    "seed": seed,
                    "train_vectors": min(len(docs), faiss_spec.train_sample) if need else 0,
                    "device": index.device,
                },
                "created": _now(),
            }
            with staging_dir(out) as tmp:
                write_snippets(tmp, snippet_lines(docs.texts))
                seconds["write"] = time.perf_counter() - t
                seconds["total"] = time.perf_counter() - t_start
                meta["build"]["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
                index.save(tmp, meta)
            if not keep_work_dir:
                remove_work_dir(work)
            encoded = len(shards.encoded)
            return BuildResult(out, len(index), index.dim, index.factory, seconds, encoded, shards.n_shards - encoded)
        finally:
            dist.close()


def build_multivector_index(
    model: str | None,
    corpus: str | Path | Corpus,
    spec: Any,
    out: str | Path,
    *,
    encoder: Any = None,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    query_length: int | None = None,
    document_length: int | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    shard_size: int | None = None,
    work_dir: str | Path | None = None,
    keep_work_dir: bool = False,
    skip_blank: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    kind: str | None = None,
) -> BuildResult:
    """Encode ``corpus`` with a ColBERT ``model`` and save a PLAID, Voyager or exact-MaxSim index to ``out``.

    The same guarantees as a FAISS build: token-vector shards (``.npz``, fp16) go to ``work_dir``
    (default ``OUT.partial``) through ``cache.iter_document_embeddings``, so a killed build encodes
    only the shards it had not finished; the index is built in a temporary sibling of ``out`` and
    renamed into place complete, with ``manifest.json`` (encoder identity and the settings that
    rebuild it), ``doc_ids.txt`` and the snippets. One process: multi-vector indices are not built
    across ``torchrun`` ranks (PLAID trains its centroids on the first chunk and assigns the rest).
    ``spec`` is a shipped spec name, a YAML path, an ``IndexSpecFile`` or ``(name, spec)``.
    ``kind`` ``"colbert"`` lets a plain or sentence-transformers encoder serve as an (untrained)
    ColBERT backbone; without it such a model is refused.
    """
    from mbert_retrieval.encoders import detect_kind
    from mbert_retrieval.indexes import make_index

    t_start = time.perf_counter()
    out = Path(out)
    spec_name, index_spec = spec if isinstance(spec, tuple) else resolve_any_spec(spec)
    if index_spec.kind == "faiss":
        raise ConfigError(f"index spec {spec_name!r} is a FAISS index: single-vector models use build_index")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError(
            f"a {index_spec.kind} index is built in one process: run `index build` without torchrun "
            "(FAISS indices are the ones built across ranks)"
        )
    if kind == "dense" or (kind is None and encoder is None and model and detect_kind(model) == "dense"):
        raise ConfigError(
            f"index spec {spec_name!r} is a {index_spec.kind} index over token vectors and {model} is a "
            "single-vector model: use a FAISS spec, a ColBERT model, or --kind colbert to use this encoder as "
            "an untrained ColBERT backbone (a seeded random projection)"
        )
    with output_lock_if_main(out):
        check_output(out, overwrite)
        docs = corpus if isinstance(corpus, Corpus) else load_corpus_input(corpus, skip_blank=skip_blank)
        try:
            cfg = EncoderConfig(
                kind="colbert",
                model=model or getattr(encoder, "name", "?"),
                batch_size=batch_size,
                max_seq_length=max_seq_length,
                query_length=query_length,
                document_length=document_length,
                query_prompt=query_prompt,
                document_prompt=document_prompt,
                device=device,
                trust_remote_code=trust_remote_code,
            )
        except ValueError as e:  # pydantic's ValidationError
            raise ConfigError(f"invalid encoder option: {format_validation_error(e)}") from None  # type: ignore[arg-type]
        if encoder is None:
            if model is None:
                raise ConfigError("a model (--model) is needed to build an index")
            check_checkpoint(model, trust_remote_code=trust_remote_code)
            encoder = encoder_from_config(cfg, progress=progress)
        if getattr(encoder, "kind", "dense") != "colbert":
            raise ConfigError(
                f"index spec {spec_name!r} is a {index_spec.kind} index over token vectors; {cfg.model} is a "
                f"{getattr(encoder, 'kind', 'dense')} encoder (use a FAISS spec, or a ColBERT model)"
            )
        truncated = log_truncated(encoder, docs.texts, docs.source)
        work = Path(work_dir) if work_dir is not None else default_work_dir(out)
        seconds = {"encode": 0.0, "index": 0.0}
        encoded_before = _cached_shard_count(work)
        with staging_dir(out) as tmp:
            index = make_index(index_spec, encoder.dim, folder=tmp)
            t = time.perf_counter()
            for rows, emb in iter_document_embeddings(
                docs.ids,
                docs.texts,
                encoder.encode_documents,
                encoder_fingerprint=encoder.fingerprint(),
                dim=encoder.dim,
                cache_dir=work,
                multi=True,
                shard_size=shard_size,
                label=f"{out.name} documents",
            ):
                t_add = time.perf_counter()
                index.add(list(docs.ids[rows]), emb)
                seconds["index"] += time.perf_counter() - t_add
            seconds["encode"] = time.perf_counter() - t - seconds["index"]
            t = time.perf_counter()
            write_snippets(tmp, snippet_lines(docs.texts))
            described = encoder.describe()
            meta = {
                "spec_name": spec_name,
                "files": {"snippets": SNIPPETS_FILE, "snippet_offsets": SNIPPET_OFFSETS_FILE},
                "encoder": described,
                "encoder_load": {
                    "kind": "colbert",
                    "model": recorded_model(cfg.model),
                    "trust_remote_code": cfg.trust_remote_code,
                    "batch_size": cfg.batch_size,
                },
                "versions": versions(),
                "build": {
                    "corpus": str(Path(docs.source).resolve()) if Path(docs.source).exists() else docs.source,
                    "corpus_format": docs.format,
                    "corpus_warnings": docs.warnings,
                    "truncated_documents": truncated,
                    "work_dir": str(work),
                },
                "created": _now(),
            }
            seconds["write"] = time.perf_counter() - t
            seconds["total"] = time.perf_counter() - t_start
            meta["build"]["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
            if index_spec.kind == "exact-maxsim":
                index.save(tmp, meta)
            else:  # PLAID and Voyager live in the folder they were made in
                index.save(meta=meta)
        n_shards = _cached_shard_count(work)
        if not keep_work_dir:
            _remove_cache_entries(work)
        return BuildResult(
            out, len(docs.ids), encoder.dim, index_spec.kind, seconds, n_shards - encoded_before, encoded_before
        )


def _remove_cache_entries(work: Path) -> None:
    """Remove the token-vector cache entries of a finished build (and ``work`` when that empties it)."""
    for entry in work.glob("*/meta.json"):
        shutil.rmtree(entry.parent, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.rmdir()


def _cached_shard_count(work: Path) -> int:
    """Token-vector shards already in a work folder (one cache entry per encoder and corpus)."""
    return sum(1 for _ in work.glob("*/*.npz")) if work.is_dir() else 0


# --------------------------------------------------------------------------------------------
# index add


def add_documents(
    index_dir: str | Path,
    corpus: str | Path | Corpus,
    *,
    replace: bool = False,
    encoder: Any = None,
    batch_size: int | None = None,
    device: str | None = None,
    shard_size: int | None = None,
    work_dir: str | Path | None = None,
    keep_work_dir: bool = False,
    skip_blank: bool = False,
    use_gpu: bool = True,
    faiss_threads: int | None = None,
    progress: bool = True,
    trust_remote_code: bool = False,
) -> BuildResult | None:
    """Append the documents of ``corpus`` to the index in ``index_dir``, encoded with its encoder.

    Ids already in the index are refused unless ``replace`` (then the old vectors are removed and the
    new ones appended; HNSW cannot remove and refuses). The updated index is written to a temporary
    copy and renamed into place.
    """
    from mbert_retrieval.indexes.faiss_index import IDS_FILE, FaissIndex, set_num_threads

    t_start = time.perf_counter()
    set_num_threads(faiss_threads)
    index_dir = Path(index_dir)
    with output_lock_if_main(index_dir):  # one writer at a time (stale locks of killed runs are taken over)
        recover_interrupted_swap(index_dir)
        remove_stale_staging(index_dir)
        manifest = read_manifest(index_dir)
        if manifest["kind"] != "faiss":
            raise ConfigError(f"{index_dir} is a {manifest['kind']!r} index; `index add` handles FAISS indices")
        spec = FaissSpec.model_validate(manifest["spec"])
        docs = corpus if isinstance(corpus, Corpus) else load_corpus_input(corpus, skip_blank=skip_blank)
        try:
            existing = (index_dir / IDS_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(index_dir / IDS_FILE, "missing: the index folder is incomplete") from None
        known = set(existing)
        dupes = [d for d in docs.ids if d in known]
        if dupes and not replace:
            shown = ", ".join(map(repr, dupes[:3])) + (", ..." if len(dupes) > 3 else "")
            raise DataError(
                docs.source,
                f"{plural(len(dupes), 'document id')} {'is' if len(dupes) == 1 else 'are'} already in the index "
                f"({shown}); pass --replace to replace them",
            )
        if dupes and spec.type == "hnsw":
            raise ConfigError(
                f"{index_dir}: cannot replace documents in an HNSW index (FAISS cannot remove vectors from it); "
                "rebuild it with `index build --overwrite`, or leave those ids out"
            )
        dist = distributed_context()
        try:
            if encoder is None:
                encoder = encoder_from_manifest(
                    manifest,
                    index_dir,
                    device=device or (f"cuda:{dist.local_rank}" if dist.backend == "nccl" else None),
                    batch_size=batch_size,
                    progress=progress and dist.is_main,
                    trust_remote_code=trust_remote_code,
                )
            else:
                check_encoder(manifest, encoder.describe(), index_dir)
            work = Path(work_dir) if work_dir is not None else default_work_dir(index_dir)
            t = time.perf_counter()
            shards = encode_in_shards(docs, encoder, work, shard_size=shard_size, dist=dist)
            seconds = {"encode": time.perf_counter() - t}
            if not dist.is_main:
                return None

            index = FaissIndex.load(index_dir, use_gpu=use_gpu, manifest=manifest)
            removed_positions = {index.position(d) for d in dupes}
            removed = index.remove(dupes) if dupes else 0
            seconds.update(fill_index(index, shards, progress=progress))
            files = manifest.get("files") or {}
            meta = {k: v for k, v in manifest.items() if k not in index.manifest_fields() and k != "format"}
            history = list(meta.get("history") or [])
            history.append(
                {
                    "op": "add",
                    "corpus": docs.source,
                    "added": len(docs) - removed,
                    "replaced": removed,
                    "n_docs": len(index),
                    "at": _now(),
                }
            )
            meta.update(
                {"files": {k: v for k, v in files.items() if k not in ("index", "doc_ids")}, "history": history}
            )
            meta["updated"] = history[-1]["at"]
            t = time.perf_counter()
            with staging_dir(index_dir) as tmp:
                if files.get("snippets") and (index_dir / SNIPPETS_FILE).is_file():
                    old = Snippets(index_dir)
                    try:
                        kept = (old.raw(i) for i in range(len(old)) if i not in removed_positions)
                        write_snippets(tmp, _chain(kept, snippet_lines(docs.texts)))
                    finally:
                        old.close()
                index.save(tmp, meta)
                seconds["write"] = time.perf_counter() - t
            seconds["total"] = time.perf_counter() - t_start
            if not keep_work_dir:
                remove_work_dir(work)
            encoded = len(shards.encoded)
            return BuildResult(
                index_dir,
                len(index),
                index.dim,
                index.factory,
                seconds,
                encoded,
                shards.n_shards - encoded,
                added=len(docs) - removed,
                replaced=removed,
            )
        finally:
            dist.close()


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part
