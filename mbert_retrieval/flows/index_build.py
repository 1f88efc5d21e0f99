"""Model + corpus -> a saved index: streaming, resumable, atomic, optionally sharded across processes.

``build_index`` (``mbert-retrieval index build``) is three named steps:

1. ``prepare_build``, shared by FAISS and multi-vector builds: the output is checked (an existing
   index is replaced only with ``overwrite``, and only once the new one is complete) and locked,
   the corpus read and checked (``data.corpus``), the encoder built from an ``EncoderConfig`` (or
   given) and checked against the spec, the truncated documents counted, the work folder named
   (default ``OUT.partial/``);
2. documents are encoded in shards into the work folder, each an atomic file through
   ``cache.iter_document_embeddings``: a killed build leaves complete shards only, and the next run
   encodes just the missing ones. FAISS (``flows.shards``): under ``torchrun`` every rank encodes the
   shards ``s`` with ``s % world_size == rank``, then rank 0 trains the quantiser on a seeded sample
   across all shards and adds them one by one. Multi-vector (PLAID, Voyager, exact MaxSim; one
   process): ``encoders.cache.encode_into_index`` adds each token-vector shard as it comes;
3. the index, ``doc_ids.txt``, text snippets and ``manifest.json`` are written into a temporary
   sibling folder, which is then renamed onto ``OUT``.

How a build runs (work folder, overwrite, seed, FAISS threads, progress) is a ``BuildOptions``; the
old keywords (``batch_size=``, ``overwrite=``, ...) are still accepted and mapped onto the two.

``add_documents`` (``index add``) appends documents with the encoder the manifest records, the
same way (shards, temporary copy, rename). See ``docs/indexing.md`` for the on-disk format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbert_retrieval.config import EncoderConfig, FaissSpec, format_validation_error
from mbert_retrieval.core.checkpoint import check_checkpoint
from mbert_retrieval.core.distributed import Distributed, distributed_context
from mbert_retrieval.core.errors import ConfigError, DataError, OutputExistsError
from mbert_retrieval.core.io import recover_interrupted_swap, remove_stale_staging, staging_dir
from mbert_retrieval.core.lock import output_lock_if_main
from mbert_retrieval.core.types import plural
from mbert_retrieval.core.versions import versions
from mbert_retrieval.data.corpus import Corpus, load_corpus_input
from mbert_retrieval.encoders import encoder_from_config, log_truncated
from mbert_retrieval.encoders.cache import encode_into_index
from mbert_retrieval.encoders.record import colbert_record, encoder_record
from mbert_retrieval.flows.shards import (
    Shards,
    encode_in_shards,
    fill_index,
    now,
    remove_work_dir,
)
from mbert_retrieval.indexes.manifest import MANIFEST_FILE, check_encoder, read_manifest
from mbert_retrieval.indexes.snippets import (
    SNIPPET_OFFSETS_FILE,
    SNIPPETS_FILE,
    Snippets,
    snippet_lines,
    write_snippets,
)
from mbert_retrieval.retrieval.rebuild import encoder_from_manifest

# --------------------------------------------------------------------------------------------
# What a build is asked to do


@dataclass(frozen=True)
class BuildOptions:
    """How a build (or an add) runs, apart from the encoder.

    ``shard_size``: rows per embedding shard (default: an unfinished build's, else 50,000 for FAISS,
    10,000 token-vector documents); ``work_dir``: where the shards go (default ``OUT.partial``),
    kept after success with ``keep_work_dir``; ``skip_blank``: leave out blank documents instead of
    refusing them; ``overwrite``: replace an existing index. FAISS only: ``seed`` (the training
    sample), ``use_gpu``, ``faiss_threads``.
    """

    shard_size: int | None = None
    work_dir: str | Path | None = None
    keep_work_dir: bool = False
    skip_blank: bool = False
    overwrite: bool = False
    seed: int = 0
    use_gpu: bool = True
    faiss_threads: int | None = None
    progress: bool = True


OPTION_KEYWORDS = frozenset(f.name for f in dataclasses.fields(BuildOptions))
ENCODER_KEYWORDS = frozenset(
    ("batch_size", "max_seq_length", "query_prompt", "document_prompt", "normalize", "device", "trust_remote_code")
)
COLBERT_KEYWORDS = frozenset(("query_length", "document_length"))


def split_keywords(
    func: str, keywords: dict[str, Any], options: BuildOptions | None, encoder_keys: frozenset[str]
) -> tuple[dict[str, Any], BuildOptions]:
    """The old keyword arguments of ``func``: (encoder settings among ``encoder_keys``, the options
    with the option keywords over ``options``). Anything else is a ``TypeError``, as Python says it."""
    unknown = sorted(set(keywords) - OPTION_KEYWORDS - encoder_keys)
    if unknown:
        raise TypeError(f"{func}() got an unexpected keyword argument {unknown[0]!r}")
    settings = {k: v for k, v in keywords.items() if k in encoder_keys}
    given = {k: v for k, v in keywords.items() if k in OPTION_KEYWORDS}
    return settings, dataclasses.replace(options or BuildOptions(), **given)


@dataclass(frozen=True)
class EncoderRequest:
    """The encoder a build asks for: a loaded ``encoder``, or ``model`` (else ``config.model``) loaded
    with ``config`` and the keyword ``settings`` over it."""

    model: str | None = None
    encoder: Any = None
    config: EncoderConfig | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def model_name(self) -> str | None:
        return self.model or (self.config.model if self.config is not None else None)

    def resolve(self, *, kind: str | None = None, device: str | None = None) -> EncoderConfig:
        """The checked ``EncoderConfig`` (``kind`` and, when none is set, ``device`` filled in)."""
        values = self.config.model_dump(exclude_unset=True) if self.config is not None else {}
        values.update(self.settings)
        values["model"] = self.model_name or getattr(self.encoder, "name", "?")
        if kind is not None:
            values["kind"] = kind
        if device and not values.get("device"):
            values["device"] = device
        try:
            return EncoderConfig(**values)
        except ValueError as e:  # pydantic's ValidationError
            raise ConfigError(f"invalid encoder option: {format_validation_error(e)}") from None  # type: ignore[arg-type]


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


# --------------------------------------------------------------------------------------------
# Step 1, shared: output, corpus, encoder, work folder


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite`` (and never replace a folder that is not an index)."""
    recover_interrupted_swap(out, MANIFEST_FILE)
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


def read_corpus(corpus: str | Path | Corpus, skip_blank: bool) -> Corpus:
    """``corpus`` as given, or read and checked from its path."""
    return corpus if isinstance(corpus, Corpus) else load_corpus_input(corpus, skip_blank=skip_blank)


def default_work_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.partial"


def work_dir_for(out: Path, options: BuildOptions) -> Path:
    return Path(options.work_dir) if options.work_dir is not None else default_work_dir(out)


@dataclass
class Prepared:
    """What ``prepare_build`` hands a build: the checked corpus and encoder, and where to work."""

    out: Path
    docs: Corpus
    cfg: EncoderConfig
    encoder: Any
    truncated: int | None
    work: Path
    dist: Distributed


@contextlib.contextmanager
def prepare_build(
    out: Path,
    corpus: str | Path | Corpus,
    request: EncoderRequest,
    options: BuildOptions,
    *,
    kind: str | None = None,
    check_corpus: Callable[[Corpus], None] = lambda docs: None,
    check_built_encoder: Callable[[Any, EncoderConfig], None] = lambda encoder, cfg: None,
) -> Iterator[Prepared]:
    """The preparation every build shares, held until the build ends: ``out`` locked (one writer at
    a time; stale locks of killed runs are taken over) and checked, the corpus read and passed to
    ``check_corpus``, the ``torchrun`` group joined, the encoder config resolved (``kind`` forced
    when given) and the encoder built (or the given one taken) and passed to
    ``check_built_encoder``, the truncated documents counted and logged on rank 0."""
    with output_lock_if_main(out):
        check_output(out, options.overwrite)
        docs = read_corpus(corpus, options.skip_blank)
        check_corpus(docs)
        dist = distributed_context()
        try:
            cfg = request.resolve(kind=kind, device=f"cuda:{dist.local_rank}" if dist.backend == "nccl" else None)
            encoder = request.encoder
            if encoder is None:
                if request.model_name is None:
                    raise ConfigError("a model (--model) is needed to build an index")
                check_checkpoint(cfg.model, trust_remote_code=cfg.trust_remote_code)
                encoder = encoder_from_config(cfg, progress=options.progress and dist.is_main)
            check_built_encoder(encoder, cfg)
            truncated = log_truncated(encoder, docs.texts, docs.source) if dist.is_main else None
            yield Prepared(out, docs, cfg, encoder, truncated, work_dir_for(out, options), dist)
        finally:
            dist.close()


def build_manifest(
    prep: Prepared, spec_name: str, encoder_load: dict[str, Any], build: dict[str, Any]
) -> dict[str, Any]:
    """The manifest fields a build writes (the index adds its own): encoder, versions, corpus, ``build``."""
    source = prep.docs.source
    return {
        "spec_name": spec_name,
        "files": {"snippets": SNIPPETS_FILE, "snippet_offsets": SNIPPET_OFFSETS_FILE},
        "encoder": prep.encoder.describe(),
        "encoder_load": encoder_load,
        "versions": versions(),
        "build": {
            "corpus": str(Path(source).resolve()) if Path(source).exists() else source,
            "corpus_format": prep.docs.format,
            "corpus_warnings": prep.docs.warnings,
            "truncated_documents": prep.truncated,
            **build,
        },
        "created": now(),
    }


def _finish_seconds(meta: dict[str, Any], seconds: dict[str, float], t_write: float, t_start: float) -> None:
    seconds["write"] = time.perf_counter() - t_write
    seconds["total"] = time.perf_counter() - t_start
    meta["build"]["seconds"] = {k: round(v, 3) for k, v in seconds.items()}


def _encode_shards(
    docs: Corpus, encoder: Any, work: Path, options: BuildOptions, dist: Distributed
) -> tuple[Shards, dict[str, float]]:
    t = time.perf_counter()
    shards = encode_in_shards(docs, encoder, work, shard_size=options.shard_size, dist=dist)
    return shards, {"encode": time.perf_counter() - t}


def _shards_result(path: Path, index: Any, seconds: dict[str, float], shards: Shards, **added: int) -> BuildResult:
    encoded = len(shards.encoded)
    return BuildResult(path, len(index), index.dim, index.factory, seconds, encoded, shards.n_shards - encoded, **added)


# --------------------------------------------------------------------------------------------
# index build: FAISS


def build_index(
    model: str | None,
    corpus: str | Path | Corpus,
    spec: Any,
    out: str | Path,
    *,
    encoder: Any = None,
    encoder_config: EncoderConfig | None = None,
    options: BuildOptions | None = None,
    kind: str | None = None,
    **keywords: Any,
) -> BuildResult | None:
    """Encode ``corpus`` with ``model`` and save an index of kind ``spec`` to ``out``.

    A multi-vector spec (PLAID, Voyager, exact MaxSim) goes to ``build_multivector_index`` (a
    ColBERT model; ``query_length`` / ``document_length`` apply there). For FAISS:

    Resumable (finished embedding shards in ``work_dir``, default ``OUT.partial``, are reused) and
    atomic (``out`` is replaced only by a complete index). Under ``torchrun`` every rank encodes
    its slice of the shards and rank 0 writes the index; the other ranks return ``None``.
    ``encoder`` may be given instead of loading ``model`` (its settings are then its own).

    The encoder is ``encoder_config`` (``model``, when given, names the checkpoint) and the run
    ``options``; the keywords of ``EncoderConfig`` (``batch_size``, ``max_seq_length``, prompts,
    ``normalize``, ``device``, ``trust_remote_code``, ``query_length``, ``document_length``) and of
    ``BuildOptions`` (``overwrite``, ``shard_size``, ...) may be passed instead, over them. ``kind``
    (else ``encoder_config.kind``) ``"colbert"`` asks for a ColBERT model.
    """
    t_start = time.perf_counter()
    out = Path(out)
    spec_name, any_spec = resolve_any_spec(spec)
    kind = kind if kind is not None else (encoder_config.kind if encoder_config is not None else None)
    if any_spec.kind != "faiss":
        return build_multivector_index(
            model,
            corpus,
            (spec_name, any_spec),
            out,
            encoder=encoder,
            encoder_config=encoder_config,
            options=options,
            kind=kind,
            **keywords,
        )
    settings, opts = split_keywords("build_index", keywords, options, ENCODER_KEYWORDS | COLBERT_KEYWORDS)
    if kind == "colbert":
        raise ConfigError(
            f"index spec {spec_name!r} is a FAISS index (one vector per document); a ColBERT model needs a "
            "plaid, voyager or exact-maxsim spec"
        )
    from mbert_retrieval.indexes.faiss_index import FaissIndex, set_num_threads

    set_num_threads(opts.faiss_threads)
    request = EncoderRequest(model, encoder, encoder_config, _without(settings, COLBERT_KEYWORDS))
    with prepare_build(
        out,
        corpus,
        request,
        opts,
        check_corpus=lambda docs: _check_train_size(any_spec, docs),
        check_built_encoder=lambda enc, cfg: _check_dense_encoder(enc, cfg, any_spec, spec_name),
    ) as prep:
        shards, seconds = _encode_shards(prep.docs, prep.encoder, prep.work, opts, prep.dist)
        if not prep.dist.is_main:
            return None
        index = FaissIndex(prep.encoder.dim, any_spec, use_gpu=opts.use_gpu)
        seconds.update(fill_index(index, shards, seed=opts.seed, progress=opts.progress))
        t = time.perf_counter()
        record = encoder_record(prep.encoder, prep.cfg)
        meta = build_manifest(prep, spec_name, record, _faiss_build_fields(prep, shards, index, opts.seed))
        with staging_dir(out) as tmp:
            write_snippets(tmp, snippet_lines(prep.docs.texts))
            _finish_seconds(meta, seconds, t, t_start)
            index.save(tmp, meta)
        if not opts.keep_work_dir:
            remove_work_dir(prep.work)
        return _shards_result(out, index, seconds, shards)


def _without(settings: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """``settings`` less the keywords of the other kind of model (accepted, and ignored here)."""
    return {k: v for k, v in settings.items() if k not in keys}


def _check_train_size(spec: FaissSpec, docs: Corpus) -> None:
    from mbert_retrieval.indexes.faiss_index import min_train_vectors

    need = min_train_vectors(spec)
    if need > min(len(docs), spec.train_sample):
        raise ConfigError(
            f"{spec.type} ({spec.factory_string()}) needs at least {need} training vectors; "
            f"the corpus has {plural(len(docs), 'document')} (train_sample {spec.train_sample}): "
            "lower nlist/nbits in the spec, or use faiss-flat / faiss-hnsw for a corpus this small"
        )


def _check_dense_encoder(encoder: Any, cfg: EncoderConfig, spec: FaissSpec, spec_name: str) -> None:
    from mbert_retrieval.indexes.faiss_index import FaissIndex

    if getattr(encoder, "kind", "dense") != "dense":
        raise ConfigError(
            f"{cfg.model} is a {encoder.kind} encoder: use a plaid, voyager or exact-maxsim spec for it "
            f"({spec_name!r} is a FAISS index, one vector per document)"
        )
    FaissIndex(encoder.dim, spec, use_gpu=False)  # dimension checks (ivf-pq m) before any encoding


def _faiss_build_fields(prep: Prepared, shards: Shards, index: Any, seed: int) -> dict[str, Any]:
    """The ``build`` fields of a FAISS manifest beyond the corpus: shards, ranks, training, device."""
    from mbert_retrieval.indexes.faiss_index import min_train_vectors

    return {
        "shard_size": shards.shard_size,
        "n_shards": shards.n_shards,
        "world_size": prep.dist.world_size,
        "seed": seed,
        "train_vectors": min(len(prep.docs), index.spec.train_sample) if min_train_vectors(index.spec) else 0,
        "device": index.device,
    }


# --------------------------------------------------------------------------------------------
# index build: multi-vector (PLAID, Voyager, exact MaxSim)


def build_multivector_index(
    model: str | None,
    corpus: str | Path | Corpus,
    spec: Any,
    out: str | Path,
    *,
    encoder: Any = None,
    encoder_config: EncoderConfig | None = None,
    options: BuildOptions | None = None,
    kind: str | None = None,
    **keywords: Any,
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
    ColBERT backbone; without it such a model is refused. The encoder and the options are given as
    to ``build_index`` (``normalize``, ``seed``, ``use_gpu`` and ``faiss_threads`` do not apply).
    """
    from mbert_retrieval.indexes import make_index

    t_start = time.perf_counter()
    out = Path(out)
    spec_name, index_spec = spec if isinstance(spec, tuple) else resolve_any_spec(spec)
    settings, opts = split_keywords("build_multivector_index", keywords, options, ENCODER_KEYWORDS | COLBERT_KEYWORDS)
    request = EncoderRequest(model, encoder, encoder_config, _without(settings, frozenset(("normalize",))))
    _refuse_multivector(spec_name, index_spec, request, kind)
    with prepare_build(
        out,
        corpus,
        request,
        opts,
        kind="colbert",
        check_built_encoder=lambda enc, cfg: _check_colbert_encoder(enc, cfg, index_spec, spec_name),
    ) as prep:
        encoded_before = _cached_shard_count(prep.work)
        with staging_dir(out) as tmp:
            index = make_index(index_spec, prep.encoder.dim, folder=tmp)
            took = encode_into_index(
                index,
                prep.docs.ids,
                prep.docs.texts,
                prep.encoder,
                cache_dir=prep.work,
                shard_size=opts.shard_size,
                label=f"{out.name} documents",
            )
            seconds = {"encode": took.encode, "index": took.index}
            t = time.perf_counter()
            write_snippets(tmp, snippet_lines(prep.docs.texts))
            meta = build_manifest(prep, spec_name, colbert_record(prep.cfg), {"work_dir": str(prep.work)})
            _finish_seconds(meta, seconds, t, t_start)
            if index_spec.kind == "exact-maxsim":
                index.save(tmp, meta)
            else:  # PLAID and Voyager live in the folder they were made in
                index.save(meta=meta)
        n_shards = _cached_shard_count(prep.work)
        if not opts.keep_work_dir:
            _remove_cache_entries(prep.work)
        return BuildResult(
            out,
            len(prep.docs.ids),
            prep.encoder.dim,
            index_spec.kind,
            seconds,
            n_shards - encoded_before,
            encoded_before,
        )


def _refuse_multivector(spec_name: str, index_spec: Any, request: EncoderRequest, kind: str | None) -> None:
    """The checks before the output is touched: the spec's kind, one process, a ColBERT model."""
    from mbert_retrieval.encoders import detect_kind

    if index_spec.kind == "faiss":
        raise ConfigError(f"index spec {spec_name!r} is a FAISS index: single-vector models use build_index")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError(
            f"a {index_spec.kind} index is built in one process: run `index build` without torchrun "
            "(FAISS indices are the ones built across ranks)"
        )
    model = request.model_name
    if kind == "dense" or (kind is None and request.encoder is None and model and detect_kind(model) == "dense"):
        raise ConfigError(
            f"index spec {spec_name!r} is a {index_spec.kind} index over token vectors and {model} is a "
            "single-vector model: use a FAISS spec, a ColBERT model, or --kind colbert to use this encoder as "
            "an untrained ColBERT backbone (a seeded random projection)"
        )


def _check_colbert_encoder(encoder: Any, cfg: EncoderConfig, index_spec: Any, spec_name: str) -> None:
    if getattr(encoder, "kind", "dense") != "colbert":
        raise ConfigError(
            f"index spec {spec_name!r} is a {index_spec.kind} index over token vectors; {cfg.model} is a "
            f"{getattr(encoder, 'kind', 'dense')} encoder (use a FAISS spec, or a ColBERT model)"
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
    trust_remote_code: bool = False,
    options: BuildOptions | None = None,
    **keywords: Any,
) -> BuildResult | None:
    """Append the documents of ``corpus`` to the index in ``index_dir``, encoded with its encoder.

    Ids already in the index are refused unless ``replace`` (then the old vectors are removed and the
    new ones appended; HNSW cannot remove and refuses). The updated index is written to a temporary
    copy and renamed into place. ``batch_size`` (default: the build's), ``device`` and
    ``trust_remote_code`` apply to the encoder rebuilt from the manifest; the run is ``options``, or
    its keywords (``shard_size``, ``work_dir``, ``keep_work_dir``, ``skip_blank``, ``use_gpu``,
    ``faiss_threads``, ``progress``).
    """
    from mbert_retrieval.indexes.faiss_index import FaissIndex, set_num_threads

    t_start = time.perf_counter()
    _, opts = split_keywords("add_documents", keywords, options, frozenset())
    set_num_threads(opts.faiss_threads)
    index_dir = Path(index_dir)
    with output_lock_if_main(index_dir):  # one writer at a time (stale locks of killed runs are taken over)
        manifest, spec = _open_faiss_index(index_dir)
        docs = read_corpus(corpus, opts.skip_blank)
        dupes = _duplicate_ids(index_dir, docs, spec, replace)
        dist = distributed_context()
        try:
            if encoder is None:
                encoder = encoder_from_manifest(
                    manifest,
                    index_dir,
                    device=device or (f"cuda:{dist.local_rank}" if dist.backend == "nccl" else None),
                    batch_size=batch_size,
                    progress=opts.progress and dist.is_main,
                    trust_remote_code=trust_remote_code,
                )
            else:
                check_encoder(manifest, encoder.describe(), index_dir)
            work = work_dir_for(index_dir, opts)
            shards, seconds = _encode_shards(docs, encoder, work, opts, dist)
            if not dist.is_main:
                return None

            index = FaissIndex.load(index_dir, use_gpu=opts.use_gpu, manifest=manifest)
            removed_positions = {index.position(d) for d in dupes}
            removed = index.remove(dupes) if dupes else 0
            seconds.update(fill_index(index, shards, progress=opts.progress))
            meta = _added_manifest(manifest, index, docs, removed)
            t = time.perf_counter()
            with staging_dir(index_dir) as tmp:
                if (manifest.get("files") or {}).get("snippets") and (index_dir / SNIPPETS_FILE).is_file():
                    _write_added_snippets(index_dir, tmp, removed_positions, docs)
                index.save(tmp, meta)
                seconds["write"] = time.perf_counter() - t
            seconds["total"] = time.perf_counter() - t_start
            if not opts.keep_work_dir:
                remove_work_dir(work)
            return _shards_result(index_dir, index, seconds, shards, added=len(docs) - removed, replaced=removed)
        finally:
            dist.close()


def _open_faiss_index(index_dir: Path) -> tuple[dict[str, Any], FaissSpec]:
    """The manifest and spec of the FAISS index in ``index_dir`` (an interrupted swap undone first)."""
    recover_interrupted_swap(index_dir, MANIFEST_FILE)
    remove_stale_staging(index_dir)
    manifest = read_manifest(index_dir)
    if manifest["kind"] != "faiss":
        raise ConfigError(f"{index_dir} is a {manifest['kind']!r} index; `index add` handles FAISS indices")
    return manifest, FaissSpec.model_validate(manifest["spec"])


def _duplicate_ids(index_dir: Path, docs: Corpus, spec: FaissSpec, replace: bool) -> list[str]:
    """The ids of ``docs`` already in the index: refused unless ``replace``, and always for HNSW."""
    from mbert_retrieval.indexes.faiss_index import IDS_FILE

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
    return dupes


def _added_manifest(manifest: dict[str, Any], index: Any, docs: Corpus, removed: int) -> dict[str, Any]:
    """The old manifest's own fields (the index writes its own) with this add appended to ``history``."""
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
            "at": now(),
        }
    )
    meta.update({"files": {k: v for k, v in files.items() if k not in ("index", "doc_ids")}, "history": history})
    meta["updated"] = history[-1]["at"]
    return meta


def _write_added_snippets(index_dir: Path, tmp: Path, removed_positions: set[int], docs: Corpus) -> None:
    """The old snippets less the replaced documents', then the new documents', into ``tmp``."""
    old = Snippets(index_dir)
    try:
        kept = (old.raw(i) for i in range(len(old)) if i not in removed_positions)
        write_snippets(tmp, _chain(kept, snippet_lines(docs.texts)))
    finally:
        old.close()


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part
