"""The eval flow: suite datasets -> encoder (or BM25, or a fusion of runs, or a built index) -> run -> metrics
-> results files.

``run_eval`` chooses the retriever once from the ``EvalConfig`` (``retrieval/retrievers.py``: an encoder
with an index, BM25, a fusion, a built index) and runs it over the suite (``retrieval/engine.py``). Per
dataset it writes ``runs/<dataset>.trec``, ``per_query/<dataset>.json`` and ``results.json``
(``results/store.py``; atomically, after each dataset: a run stopped half-way keeps what it finished).
For a model: encode the corpus (through the shard cache, so a killed run resumes), add it to the index
of the spec (by default exact FAISS for dense models; for ColBERT ``plaid-auto``: PLAID, or exact MaxSim
where faster), encode the queries, search the top ``k``, score.

The model ``bm25`` runs bm25s instead of an encoder (``bm25.py``); ``EvalConfig.fusion`` fuses the
runs of earlier result folders (and BM25 computed on the fly) with ``fusion.py``. Both write the
same files as a model does. Under ``torchrun`` the ranks split a model's document encoding
(``_encode_across_ranks``) and rank 0 evaluates. ``eval --engine mteb`` is ``retrieval/mteb.run_eval_mteb``, the same
loop and results files with MTEB's evaluator as the retriever.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mbert_retrieval.catalog import load_index_spec
from mbert_retrieval.config import DatasetSpec, EvalConfig, IndexSpecFile
from mbert_retrieval.core.distributed import Distributed, distributed_context
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.encoders import Encoder, encoder_from_config
from mbert_retrieval.indexes import check_compatible
from mbert_retrieval.results.store import (
    CONFIG_FILE,
    OUR_ENGINE,
    PER_QUERY_DIR,
    RESULTS_FILE,
    ResultsStore,
    result_key,
    writing_results,
)
from mbert_retrieval.retrieval.engine import Retriever, dataset_settings, run_suite
from mbert_retrieval.retrieval.retrievers import (
    BM25Retriever,
    BuiltIndexRetriever,
    EncoderRetriever,
    FusionRetriever,
    bm25_dataset_run,
    evaluate_bm25_dataset,
    evaluate_built_index,
    evaluate_dataset,
    evaluate_fused_dataset,
    open_built_index,
)


def default_index(encoder_kind: str) -> IndexSpecFile:
    """faiss-flat (exact) for single-vector encoders; for ColBERT ``plaid-auto``: PLAID, or on a CPU exact
    MaxSim where that is estimated faster than building and searching PLAID for the dataset's queries."""
    return load_index_spec("plaid-auto" if encoder_kind == "colbert" else "faiss-flat")


def run_eval(
    cfg: EvalConfig,
    *,
    encoder: Encoder | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """``_run_eval`` holding the output lock of ``cfg.out`` (one writer per folder; see ``lock``).

    A run that fails before its first dataset is finished leaves no ``config.resolved.yaml`` behind
    (embedding shards stay in the cache, for the next run).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the document encoding is split across the ranks first
    (``_encode_across_ranks``); then rank 0 alone evaluates, reading every shard from the cache, and
    writes the results (the same files as one process); the other ranks return ``{}``."""
    dist = distributed_context()
    try:
        with (
            writing_results(cfg.out),  # the output checked and locked (rank 0) before any encoding
            contextlib.ExitStack() as stack,  # holds a built index (--index-dir) open for the run
        ):
            if dist.world_size > 1:
                encoder = _encode_across_ranks(cfg, dist, encoder=encoder, overwrite=overwrite, progress=progress)
                if not dist.is_main:
                    return {}
            return _run_eval(cfg, stack, encoder=encoder, overwrite=overwrite, progress=progress)
    finally:
        dist.close()


def _encode_across_ranks(
    cfg: EvalConfig, dist: Distributed, *, encoder: Encoder | None, overwrite: bool, progress: bool
) -> Encoder:
    """Every rank encodes its shards of every corpus still to evaluate into the cache (shard ``s`` on rank
    ``s % world_size``), then waits for the others; returns the encoder, for rank 0's evaluation.

    Only a model's corpus encoding is split: BM25, a fusion or a built index has none, and the cache is how
    shards travel. Rank 0 first refuses what one process would refuse before encoding (a folder of another
    encoder setting) and tells the others which datasets are not finished there yet (resume)."""
    if cfg.encoder is None or cfg.is_bm25 or cfg.index_dir is not None:
        raise ConfigError(
            "torchrun splits the corpus encoding of a model: run --model bm25, --fuse and --index-dir in one process"
        )
    if cfg.cache_dir is None:
        raise ConfigError(
            "torchrun: the ranks hand their embedding shards over through the cache; leave out --no-cache"
        )
    specs = [cfg.suite.dataset(name) for name in cfg.datasets]
    retriever = _encoder_retriever(cfg, encoder, progress=progress and dist.is_main)
    encoder = retriever.encoder
    todo = [(spec, cfg.split or spec.split) for spec in specs]
    if dist.is_main:
        todo = _not_finished(cfg, retriever, todo, overwrite=overwrite)
        if cfg.download:  # fetch what is missing once, before the other ranks read it
            data_dir = Path(cfg.data_dir) if cfg.data_dir else Path(cfg.out) / "data"
            for spec, split in todo:
                for _ in iter_datasets(spec, data_dir=data_dir, split=split, download=True):
                    pass
    names = dist.broadcast([spec.name for spec, _ in todo])
    length = getattr(encoder, "document_length", None)
    for spec, split in todo:  # rank 0's list: on the other ranks, every dataset but those it left out
        if spec.name in names:
            retriever.encode_rank_shards(
                spec, result_key(spec, split), split, rank=dist.rank, world_size=dist.world_size
            )
    if length is not None and hasattr(encoder, "set_document_length"):
        encoder.set_document_length(length)  # a suite's per-dataset length must not stay behind for rank 0
    dist.barrier()
    return encoder


def _not_finished(
    cfg: EvalConfig, retriever: EncoderRetriever, todo: list[tuple[DatasetSpec, str]], *, overwrite: bool
) -> list[tuple[DatasetSpec, str]]:
    """Rank 0, before any encoding: refuse a folder of another encoder setting, as one process would, and
    leave out the datasets finished there with the same settings."""
    store = ResultsStore(cfg.out, overwrite=overwrite)
    store.refuse_other_writer(retriever.describe().encoder["fingerprint"], OUR_ENGINE)
    if store.existing is None:
        return todo
    return [
        (s, split)
        for s, split in todo
        if not store.finished(result_key(s, split), dataset_settings(retriever, cfg, s, split))
    ]


def _run_eval(
    cfg: EvalConfig, stack: contextlib.ExitStack, *, encoder: Encoder | None, overwrite: bool, progress: bool
) -> dict[str, Any]:
    """Evaluate ``cfg.encoder`` (a model, or ``bm25``) or ``cfg.fusion`` on ``cfg.datasets`` of
    ``cfg.suite``; write and return the results.

    Re-running into the same ``--out`` with the same encoder skips datasets already finished with
    the same settings (resume); a different encoder there is refused unless ``overwrite``.
    """
    store = ResultsStore(cfg.out, overwrite=overwrite)
    specs = [cfg.suite.dataset(name) for name in cfg.datasets]  # unknown names fail before any work
    retriever = _retriever(cfg, specs, stack, encoder=encoder, progress=progress)
    return run_suite(retriever, store, cfg, specs)


def _retriever(
    cfg: EvalConfig, specs: list[DatasetSpec], stack: contextlib.ExitStack, *, encoder: Encoder | None, progress: bool
) -> Retriever:
    """The one retriever ``cfg`` asks for: a fusion, a built index, BM25, or a model with its index spec."""
    if cfg.fusion is not None:
        return FusionRetriever(cfg, progress=progress)
    if cfg.index_dir is not None:
        built = stack.enter_context(open_built_index(cfg, specs, progress=progress))
        return BuiltIndexRetriever(cfg, built, progress=progress)
    if cfg.is_bm25:
        return BM25Retriever(cfg, progress=progress)
    return _encoder_retriever(cfg, encoder, progress=progress)


def _encoder_retriever(cfg: EvalConfig, encoder: Encoder | None, *, progress: bool) -> EncoderRetriever:
    """``cfg``'s model (built unless given) with its index spec (default by kind), checked compatible."""
    assert cfg.encoder is not None
    encoder = encoder or encoder_from_config(cfg.encoder, progress=progress)
    index_file = cfg.index or default_index(encoder.kind)
    check_compatible(index_file.index, encoder.kind)
    return EncoderRetriever(cfg, encoder, index_file, progress=progress)


__all__ = [
    "CONFIG_FILE",
    "PER_QUERY_DIR",
    "RESULTS_FILE",
    "bm25_dataset_run",
    "default_index",
    "evaluate_bm25_dataset",
    "evaluate_built_index",
    "evaluate_dataset",
    "evaluate_fused_dataset",
    "result_key",
    "run_eval",
]
