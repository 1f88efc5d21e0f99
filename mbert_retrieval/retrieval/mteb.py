"""MTEB interop: our encoders as MTEB models, and ``eval --engine mteb`` through MTEB's own evaluator.

The one module that imports ``mteb`` (2.x). Two things live here:

- :func:`to_mteb` hands an encoder of this project (``DenseEncoder``, ``ColBERTEncoder``, or a model
  path) to MTEB's own sentence-transformers wrappers, so that ``mteb.evaluate(to_mteb(...), tasks)``
  runs it unchanged: a dense encoder's ``SentenceTransformer`` goes into MTEB's
  ``SentenceTransformerEncoderWrapper`` (MTEB's ``SearchEncoderWrapper`` then searches exhaustively
  with the model's cosine or dot product), a ColBERT's ``MultiVectorEncoder`` into MTEB's
  ``MultiVectorWrapper`` (exact MaxSim over the whole corpus in chunks; MTEB's PyLate wrapper
  searches a PLAID index instead, exact is the reference). The thin subclasses here only set them up
  as our engine encodes: the encoder's own prompts (ColBERT: its ``[Q] ``/``[D] `` marker, then the
  prompt) for every task instead of MTEB's per-task prompts, its normalisation and batch size, and
  our unpadded ModernBERT forward; lengths, query expansion and skiplist live in the shared model.
- :func:`run_eval_mteb` evaluates the datasets of an ``EvalConfig`` with MTEB's retrieval evaluator
  (its search, pytrec_eval scoring and MRR): :class:`MtebRetriever` is the retriever, run by the same
  suite loop as our engine (``retrieval/engine.run_suite``), which writes ``results.json`` in our
  schema (``results/store.py``) with ``"engine": "mteb"``, ``runs/<key>.trec`` and
  ``per_query/<key>.json``. A dataset found under
  ``--data-dir`` (or built: stdlib) is loaded with our loaders and handed to MTEB as a custom
  ``AbsTaskRetrieval`` (MTEB's dict format, no hub access); a missing one, with ``--download``,
  runs MTEB's built-in task from the hub when MTEB has one for it (:data:`MTEB_TASKS`), else our
  own download or hub loader fetches it and MTEB gets it as a custom task. Built-in tasks keep
  MTEB's settings (e.g. ``ignore_identical_ids`` is on for FiQA2018 and FEVER there, not in our
  suite), so online numbers can differ from our engine's where those settings differ.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import mteb
from mteb._evaluators.retrieval_metrics import mrr as mteb_mrr
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models import ModelMeta, MultiVectorWrapper, SentenceTransformerEncoderWrapper
from mteb.models.model_meta import ScoringFunction
from mteb.similarity_functions import dot_score
from mteb.types import PromptType

from mbert_retrieval.config import DatasetSpec, EvalConfig
from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import write_json
from mbert_retrieval.core.types import RetrievalDataset
from mbert_retrieval.core.versions import versions
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.encoders import Encoder, encoder_from_config, load_encoder
from mbert_retrieval.encoders.colbert import _quiet_expansion_notice
from mbert_retrieval.encoders.unpadded import unpadded
from mbert_retrieval.results.metrics import parse_measure
from mbert_retrieval.results.runs import write_run
from mbert_retrieval.results.store import PER_QUERY_DIR, ResultsStore, combine_subsets, writing_results
from mbert_retrieval.retrieval.engine import Described, run_suite

log = logging.getLogger(__name__)

ENGINE = "mteb"

# Our dataset names (suite entries; CQADupStack forums as "cqadupstack/<forum>") -> MTEB's built-in
# task, and the hf_subset of it that is meant (None: the task's only one).
MTEB_TASKS: dict[str, tuple[str, str | None]] = {
    "nfcorpus": ("NFCorpus", None),
    "scifact": ("SciFact", None),
    "trec-covid": ("TRECCOVID", None),
    "fiqa": ("FiQA2018", None),
    "arguana": ("ArguAna", None),
    "climate-fever": ("ClimateFEVER", None),
    "dbpedia-entity": ("DBPedia", None),
    "fever": ("FEVER", None),
    "hotpotqa": ("HotpotQA", None),
    "msmarco": ("MSMARCO", None),
    "nq": ("NQ", None),
    "quora": ("QuoraRetrieval", None),
    "scidocs": ("SCIDOCS", None),
    "webis-touche2020": ("Touche2020", None),
    **{
        f"cqadupstack/{forum}": (f"CQADupstack{forum.capitalize()}Retrieval", None)
        for forum in (
            "android",
            "english",
            "gaming",
            "gis",
            "mathematica",
            "physics",
            "programmers",
            "stats",
            "tex",
            "unix",
            "webmasters",
            "wordpress",
        )
    },
    "mldr": ("MultiLongDocRetrieval", "en"),
    "mldr-dev": ("MultiLongDocRetrieval", "en"),
    "qmsum": ("LEMBQMSumRetrieval", None),
    "narrativeqa": ("LEMBNarrativeQARetrieval", None),
    "summ-screen-fd": ("LEMBSummScreenFDRetrieval", None),
    "2wikimqa": ("LEMBWikimQARetrieval", None),
    "stackoverflow-qa": ("StackOverflowQA", None),
    **{
        f"codesearchnet/{lang}": ("COIRCodeSearchNetRetrieval", lang)
        for lang in ("python", "javascript", "go", "ruby", "java", "php")
    },
}

# ir-measures name -> (key in MTEB's score dict, key in pytrec_eval's per-query dict or None for RR)
_MEASURE_KEYS = {"nDCG": ("ndcg_at_{k}", "ndcg_cut_{k}"), "R": ("recall_at_{k}", "recall_{k}")}
_MEASURE_KEYS |= {"P": ("precision_at_{k}", "P_{k}"), "AP": ("map_at_{k}", "map_cut_{k}"), "RR": ("mrr_at_{k}", None)}
_MTEB_K_VALUES = (1, 3, 5, 10, 20, 100, 1000)  # MTEB's defaults; its score dict needs Recall@1


def _mteb_class(model: Any) -> str:
    """The MTEB class a model of :func:`to_mteb` is (e.g. ``MultiVectorWrapper``): recorded in results."""
    return next((c.__name__ for c in type(model).__mro__ if c.__module__.startswith("mteb.")), type(model).__name__)


@contextlib.contextmanager
def _quiet_wrapper_setup() -> Iterator[None]:
    """MTEB's wrappers warn about the model's own prompts (missing ``query``/``document`` keys, keys that
    are no task names) and ``ModelMeta.from_sentence_transformer_model`` about a deprecated argument we
    do not pass; the prompts are replaced right after construction, so those messages would mislead."""
    wrapper_log = logging.getLogger("mteb.models.sentence_transformer_wrapper")
    level = wrapper_log.level
    wrapper_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        wrapper_log.setLevel(level)


def _fixed_prompts(query: str | None, document: str | None) -> dict[str, str] | None:
    """``model_prompts`` for MTEB's wrappers that give every task our encoder's own prompts (MTEB passes
    ``prompt=None`` where a side has none, so sentence-transformers falls back as in our engine)."""
    prompts = {k: v for k, v in ((PromptType.query.value, query), (PromptType.document.value, document)) if v}
    return prompts or None


def _model_meta(
    derived: ModelMeta, encoder: Encoder, name: str | None, revision: str | None, similarity: ScoringFunction
) -> ModelMeta:
    """MTEB's meta for the wrapped model (``ModelMeta.from_*_model``: loader, embedding parameters), with
    our name (``org/name``; a local folder becomes ``mbert-retrieval/<folder>``), the fingerprint as
    revision, and the facts of our encoder."""
    base = (name or encoder.name).rstrip("/")
    if "/" not in base or Path(base).expanduser().exists():  # a local folder: MTEB wants "org/name"
        base = f"mbert-retrieval/{Path(base).name or 'model'}"
    facts = encoder.describe()
    return derived.model_copy(
        update={
            "name": base,
            "revision": revision or facts["fingerprint"][:16],
            "embed_dim": facts.get("dim"),
            "max_tokens": facts.get("max_seq_length"),
            "similarity_fn_name": similarity,
            "framework": ["PyTorch", "Sentence Transformers"],
            "model_type": ["dense"] if encoder.kind == "dense" else ["late-interaction"],
            "open_weights": True,
        }
    )


class MtebDenseModel(SentenceTransformerEncoderWrapper):
    """MTEB's ``SentenceTransformerEncoderWrapper`` around a ``DenseEncoder``'s ``SentenceTransformer``,
    set up to encode as our engine does; MTEB's own code picks the prompt, encodes and scores.

    What is ours: the prompts (the encoder's ``query_prompt``/``document_prompt`` for every task, not
    MTEB's per-task ones; the model's ``prompts`` are left as they are), ``normalize_embeddings`` from
    the encoder, its ``batch_size`` unless MTEB's ``encode_kwargs`` give one, and the unpadded
    ModernBERT forward around each call when the encoder has ``unpad``. Scores are MTEB's (the model's
    ``similarity``, cosine or dot product), except where that is not the inner product our engine
    searches with (``normalize`` off on a cosine model, or a model declaring another function): then
    MTEB's ``dot_score``.
    """

    def __init__(self, encoder: Encoder, *, name: str | None = None, revision: str | None = None) -> None:
        if encoder.kind != "dense":
            raise ConfigError(f"MtebDenseModel wraps dense encoders; got kind {encoder.kind!r} (use MtebColBERTModel)")
        with _quiet_wrapper_setup():
            super().__init__(encoder.model)
        self.encoder = encoder
        self.model_prompts = _fixed_prompts(encoder.query_prompt, encoder.document_prompt)
        self.normalize = bool(getattr(encoder, "normalize", True))
        function = getattr(encoder.model, "similarity_fn_name", None) or "cosine"
        self.inner_product = not ((function == "cosine" and self.normalize) or function == "dot")
        similarity = ScoringFunction.COSINE if self.normalize else ScoringFunction.DOT_PRODUCT
        self.mteb_model_meta = _model_meta(self.mteb_model_meta, encoder, name, revision, similarity)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.setdefault("batch_size", self.encoder.batch_size)
        kwargs["normalize_embeddings"] = self.normalize
        with unpadded(self.encoder.transformer_model, enabled=self.encoder.unpad):
            return super().encode(
                inputs,
                task_metadata=task_metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=prompt_type,
                **kwargs,
            )

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        if self.inner_product:
            return dot_score(embeddings1, embeddings2)
        return super().similarity(embeddings1, embeddings2)


class MtebColBERTModel(MultiVectorWrapper):
    """MTEB's ``MultiVectorWrapper`` around a ``ColBERTEncoder``'s sentence-transformers ``MultiVectorEncoder``:
    MTEB's exact MaxSim search (``index`` keeps the corpus; ``search`` encodes the queries, then the
    corpus in chunks of ``corpus_chunk_size`` documents, scores them with the model's MaxSim and keeps
    the top ``k``). MTEB's PyLate wrapper searches a PLAID index instead; exact is the reference.

    What is ours: the prompts (the model's ``[Q] ``/``[D] `` marker followed by the encoder's
    query/document prompt, for every task), the encoder's ``batch_size`` unless ``encode_kwargs`` give
    one, and the unpadded ModernBERT forward for documents, and for queries where the encoder uses it
    (not with ``[MASK]`` expansion, whose padding is read back). Query/document lengths, query
    expansion and the skiplist are the model's own settings, so MTEB's calls use the encoder's.
    ``encode`` is also offered (one ``[tokens, dim]`` tensor per text) for callers that want the token vectors.
    """

    def __init__(
        self, encoder: Encoder, *, name: str | None = None, revision: str | None = None, corpus_chunk_size: int = 10_000
    ) -> None:
        if encoder.kind != "colbert":
            raise ConfigError(f"MtebColBERTModel wraps ColBERT encoders; got kind {encoder.kind!r}")
        with _quiet_wrapper_setup():
            super().__init__(encoder.model, corpus_chunk_size=corpus_chunk_size)
        self.encoder = encoder
        self.model_prompts = _fixed_prompts(encoder._prompt(True), encoder._prompt(False))
        self.mteb_model_meta = _model_meta(self.mteb_model_meta, encoder, name, revision, ScoringFunction.MAX_SIM)

    def _encode(
        self,
        inputs: Any,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.setdefault("batch_size", self.encoder.batch_size)
        fast = self.encoder.unpad and (prompt_type != PromptType.query or self.encoder._unpad_queries())
        with unpadded(self.encoder.transformer_model, enabled=fast), _quiet_expansion_notice():
            return super()._encode(
                inputs,
                task_metadata=task_metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=prompt_type,
                **kwargs,
            )

    encode = _encode


def to_mteb(
    model: Encoder | str, *, kind: str | None = None, name: str | None = None, **encoder_kwargs: Any
) -> MtebDenseModel | MtebColBERTModel:
    """An MTEB model for ``mteb.evaluate``: MTEB's sentence-transformers wrapper for a dense encoder
    (``SentenceTransformerEncoderWrapper``), its multi-vector one for a ColBERT (``MultiVectorWrapper``),
    each around our encoder's model and set up as our engine encodes (see :class:`MtebDenseModel`,
    :class:`MtebColBERTModel`). ``model`` is our encoder or a model path loaded as ``load_encoder`` does.

    Example::

        import mteb
        from mbert_retrieval.retrieval.mteb import to_mteb

        results = mteb.evaluate(to_mteb("out/scifact-dense/model"), mteb.get_tasks(["SciFact"]), cache=None)
    """
    encoder = load_encoder(model, kind, **encoder_kwargs) if isinstance(model, str) else model
    if encoder.kind == "colbert":
        return MtebColBERTModel(encoder, name=name)
    if encoder.kind == "dense":
        return MtebDenseModel(encoder, name=name)
    raise ConfigError(f"MTEB wraps dense and ColBERT encoders; got kind {encoder.kind!r}")


# ------------------------------------------------------------------------------------------------
# Tasks


class LocalRetrievalTask(AbsTaskRetrieval):
    """One dataset loaded by our loaders, as an MTEB retrieval task (MTEB's dict format; no hub).

    Make one with :func:`local_task` (MTEB wants ``metadata`` on the class, so each dataset gets a
    subclass). Documents are given as their full text (``title`` empty), which MTEB reads unchanged.
    """

    _ds: RetrievalDataset

    def load_data(self, num_proc: int | None = None, *, timer: Any = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        ds, split = self._ds, self._ds.split
        self.corpus = {
            split: {i: {"title": "", "text": t} for i, t in zip(ds.corpus_ids, ds.corpus_texts, strict=True)}
        }
        self.queries = {split: dict(ds.queries)}
        self.relevant_docs = {split: {qid: dict(docs) for qid, docs in ds.qrels.items()}}
        self.data_loaded = True


def local_task(
    ds: RetrievalDataset,
    *,
    ignore_identical_ids: bool = False,
    k_values: Iterable[int] = _MTEB_K_VALUES,
    top_k: int = 1000,
) -> LocalRetrievalTask:
    """An MTEB retrieval task over a loaded dataset. ``eval_langs`` is a placeholder (``eng-Latn``):
    MTEB requires one and only reports it."""
    metadata = TaskMetadata(
        name=f"local:{ds.name}",
        description=f"local dataset {ds.source or ds.name} ({ds.split})",
        dataset={"path": ds.source or ds.name, "revision": "local"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[ds.split],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
    )
    cls = type(f"Local_{ds.name}", (LocalRetrievalTask,), {"metadata": metadata, "_ds": ds})
    task = cls()
    task.ignore_identical_ids = ignore_identical_ids
    task.k_values = tuple(sorted(set(k_values)))
    task._top_k = top_k
    return task


def _capture(task: AbsTaskRetrieval) -> list[dict[str, Any]]:
    """Record what MTEB scored (per-query pytrec_eval values, the qrels and the run) per subset."""
    captured: list[dict[str, Any]] = []
    original: Callable[..., dict[str, float]] = task.task_specific_scores

    def task_specific_scores(scores, qrels, results, hf_split, hf_subset):
        n_docs = len(task.dataset[hf_subset][hf_split]["corpus"])  # still loaded while MTEB scores
        captured.append({"per_query": scores, "qrels": qrels, "run": results, "n_docs": n_docs})
        captured[-1] |= {"split": hf_split, "subset": hf_subset}
        return original(scores, qrels, results, hf_split=hf_split, hf_subset=hf_subset)

    task.task_specific_scores = task_specific_scores  # type: ignore[method-assign]
    return captured


def builtin_task(name: str, split: str, *, k_values: Iterable[int], top_k: int) -> tuple[AbsTaskRetrieval, str | None]:
    """MTEB's built-in task for one of our dataset names (see ``MTEB_TASKS``), restricted to ``split``."""
    if name not in MTEB_TASKS:
        raise ConfigError(
            f"no MTEB task is known for dataset {name!r}; put its folder under --data-dir "
            f"(known: {', '.join(sorted(MTEB_TASKS))})"
        )
    task_name, subset = MTEB_TASKS[name]
    task = mteb.get_task(task_name, eval_splits=[split], hf_subsets=[subset] if subset else None)
    if not isinstance(task, AbsTaskRetrieval):
        raise ConfigError(f"MTEB task {task_name} is not a retrieval task")
    task.k_values = tuple(sorted(set(task.k_values) | set(k_values)))
    task._top_k = top_k
    return task, subset


# ------------------------------------------------------------------------------------------------
# Running a task, turning MTEB's answer into our record, and the retriever of ``eval --engine mteb``


def _mean_keys(metrics: list[str]) -> dict[str, tuple[str, str | None, int]]:
    out = {}
    for name in metrics:
        m = parse_measure(name)
        score_key, query_key = _MEASURE_KEYS[m.name]
        out[name] = (score_key.format(k=m.cutoff), query_key.format(k=m.cutoff) if query_key else None, m.cutoff)
    return out


def _per_query(captured: dict[str, Any], metrics: list[str]) -> dict[str, dict[str, float]]:
    """Per-query values as MTEB computed them: pytrec_eval's, and MTEB's own MRR for ``RR@k``."""
    keys = _mean_keys(metrics)
    per_query: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, float]] = captured["per_query"]
    for name, (_, query_key, k) in keys.items():
        if query_key is not None:
            per_query[name] = {qid: float(values[query_key]) for qid, values in scores.items()}
        else:
            run = {qid: captured["run"][qid] for qid in scores if qid in captured["run"]}
            rr = mteb_mrr(captured["qrels"], run, [k])[f"MRR@{k}"]
            per_query[name] = dict(zip(run, map(float, rr), strict=True))
    return per_query


def evaluate_task(
    model: Any,
    task: AbsTaskRetrieval,
    *,
    metrics: list[str],
    batch_size: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Run ``mteb.evaluate`` on one task; per evaluated subset: MTEB's means, per-query values, run."""
    captured = _capture(task)
    t = time.perf_counter()
    result = mteb.evaluate(
        model,
        task,
        cache=None,
        co2_tracker=False,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": progress},
        show_progress_bar=progress,
    )
    wall = time.perf_counter() - t
    if result.exceptions:
        raise DataError(task.metadata.name, f"MTEB failed: {result.exceptions[0]}")
    task_result = result.task_results[0]
    keys = _mean_keys(metrics)
    seconds: dict[str, float] = defaultdict(float)  # MTEB's own phases (data loading, encoding, scoring)
    for phase in task_result.evaluation_phases or []:
        seconds[phase["name"]] += phase["end"] - phase["start"]
    out = []
    for cap in captured:
        row = next(
            s for s in task_result.scores[cap["split"]] if s.get("hf_subset", "default") == cap["subset"]
        )  # MTEB's rounded means (5 decimals), as it publishes them
        out.append(
            {
                "subset": cap["subset"],
                "means": {name: float(row[score_key]) for name, (score_key, _, _) in keys.items()},
                "per_query": _per_query(cap, metrics),
                "run": cap["run"],
                "n_queries": len(cap["per_query"]),
                "n_docs": cap["n_docs"],
                "n_judged_queries": len(cap["qrels"]),
                "seconds": {"total": round(wall, 3), **{k: round(v, 3) for k, v in seconds.items()}},
            }
        )
    return out


class MtebRetriever:
    """``eval --engine mteb``'s retriever: one suite entry is one MTEB task per subset, evaluated by
    MTEB's retrieval evaluator (its exhaustive search, pytrec_eval scoring and MRR) around our encoder
    (:func:`to_mteb`). A dataset found under ``--data-dir`` (or built: stdlib) runs as a local task;
    a missing one, with ``--download``, as MTEB's built-in task when MTEB has one for each of its names."""

    def __init__(self, cfg: EvalConfig, encoder: Encoder, *, progress: bool) -> None:
        assert cfg.encoder is not None
        self.cfg = cfg
        self.encoder = encoder
        self.progress = progress
        self.out = Path(cfg.out)
        self.metrics = list(cfg.suite.metrics)
        self.k_values = set(_MTEB_K_VALUES) | {parse_measure(m).cutoff for m in self.metrics}
        self.data_dir = Path(cfg.data_dir) if cfg.data_dir else self.out / "data"
        self.tag = f"mteb_{encoder.name.rstrip('/').split('/')[-1]}"
        self.model: Any = None

    def describe(self) -> Described:
        assert self.cfg.encoder is not None
        described = self.encoder.describe()
        self.model = to_mteb(self.encoder)
        return Described(
            model=self.cfg.encoder.model,
            engine=ENGINE,
            encoder=described,
            index={"name": "mteb", "kind": "mteb-exact", "search": _mteb_class(self.model)},
            versions={**versions(), "mteb": mteb.__version__},
            config={"engine": ENGINE, **self.cfg.model_dump(mode="json")},
        )

    def settings(self, spec: DatasetSpec) -> dict[str, Any]:
        return {"engine": ENGINE}

    def evaluate(self, spec: DatasetSpec, key: str, split: str) -> tuple[dict[str, Any], dict[str, float]]:
        """Evaluate one suite entry (its subsets one at a time); write runs and per-query files."""
        names = [f"{spec.name}/{s}" for s in spec.subsets] if spec.subsets else [spec.name]
        self._set_document_length(spec)
        builtin = self._builtin(spec, names)
        subs = self._evaluate_builtin(names, split) if builtin else self._evaluate_local(spec, split)
        records = {}
        for sub_name, sub, record in subs:
            run_name = f"{key}/{sub_name}" if sub_name else key
            write_run(self.out / "runs" / f"{run_name}.trec", sub["run"], tag=self.tag)
            write_json(self.out / PER_QUERY_DIR / f"{run_name}.json", sub["per_query"])
            records[sub_name or key] = record
        record, means = combine_subsets(key, split, records, self.metrics, subsets=bool(spec.subsets))
        log.info("%s (MTEB): %s", key, ", ".join(f"{m} {v:.5f}" for m, v in means.items()))
        return record, means

    def _builtin(self, spec: DatasetSpec, names: list[str]) -> bool:
        """MTEB's own task (from the hub) only when the data is not here, downloading is allowed and MTEB has it."""
        return bool(
            self.cfg.download
            and spec.source != "stdlib"
            and not (self.data_dir / spec.folder_name).is_dir()
            and all(n in MTEB_TASKS for n in names)
        )

    def _set_document_length(self, spec: DatasetSpec) -> None:
        """ColBERT: the suite's per-dataset document length, as ours (unless ``--document-length`` set one)."""
        assert self.cfg.encoder is not None
        if spec.document_length is not None and self.cfg.encoder.document_length is None:
            set_length = getattr(self.encoder, "set_document_length", None)
            if set_length is not None:
                set_length(spec.document_length)

    def _run_task(self, task: AbsTaskRetrieval) -> dict[str, Any]:
        assert self.cfg.encoder is not None
        (sub,) = evaluate_task(
            self.model, task, metrics=self.metrics, batch_size=self.cfg.encoder.batch_size, progress=self.progress
        )
        return sub

    def _evaluate_local(self, spec: DatasetSpec, split: str) -> Iterator[tuple[str | None, dict, dict]]:
        """Each dataset (subset) loaded by our loaders, as a local task: ``(subset, MTEB's answer, record)``."""
        for ds in iter_datasets(spec, data_dir=self.data_dir, split=split, download=self.cfg.download):
            sub_name = ds.name.split("/", 1)[1] if "/" in ds.name else None
            log.info("%s (MTEB engine, local task)", ds.summary())
            count = getattr(self.encoder, "count_truncated", None)
            truncated = count(ds.corpus_texts) if count is not None else None
            task = local_task(
                ds, ignore_identical_ids=spec.ignore_identical_ids, k_values=self.k_values, top_k=self.cfg.top_k
            )
            sub = self._run_task(task)
            same_ids = spec.ignore_identical_ids
            record = self._record(
                sub, split, str(ds.source), truncated, ignore_identical_ids=same_ids, warnings=ds.warnings
            )
            yield sub_name, sub, record

    def _evaluate_builtin(self, names: list[str], split: str) -> Iterator[tuple[str | None, dict, dict]]:
        """Each name as MTEB's built-in task, from the hub: ``(subset, MTEB's answer, record)``."""
        for name in names:
            sub_name = name.split("/", 1)[1] if "/" in name else None
            task, _ = builtin_task(name, split, k_values=self.k_values, top_k=self.cfg.top_k)
            log.info("%s: MTEB built-in task %s (from the hub)", name, task.metadata.name)
            sub = self._run_task(task)
            hub = task.metadata.dataset
            source = f"mteb:{task.metadata.name} ({hub['path']}@{hub['revision']})"
            record = self._record(
                sub, split, source, None, ignore_identical_ids=bool(task.ignore_identical_ids), warnings={}
            )
            yield sub_name, sub, record

    def _record(
        self,
        sub: dict[str, Any],
        split: str,
        source: str,
        truncated: int | None,
        *,
        ignore_identical_ids: bool,
        warnings: dict[str, int],
    ) -> dict[str, Any]:
        return {
            "split": split,
            "source": source,
            "n_docs": sub["n_docs"],
            "n_queries": sub["n_queries"],
            "n_queries_without_results": sub["n_judged_queries"] - sub["n_queries"],
            "truncated_documents": truncated,
            "max_seq_length": getattr(self.encoder, "max_seq_length", None),
            "ignore_identical_ids": ignore_identical_ids,
            "top_k": self.cfg.top_k,
            "index": "mteb-exact",
            "warnings": warnings,
            "seconds": sub["seconds"],
            "metrics": sub["means"],
        }


def run_eval_mteb(
    cfg: EvalConfig, *, encoder: Encoder | None = None, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """``_run_eval_mteb`` holding the output lock of ``cfg.out``, as ``flows.evaluate.run_eval`` does."""
    with writing_results(cfg.out):
        return _run_eval_mteb(cfg, encoder=encoder, overwrite=overwrite, progress=progress)


def _run_eval_mteb(cfg: EvalConfig, *, encoder: Encoder | None, overwrite: bool, progress: bool) -> dict[str, Any]:
    """Evaluate ``cfg`` with MTEB's retrieval evaluator; write and return results in our schema.

    Same outputs as ``flows.evaluate.run_eval`` (``results.json`` with ``"engine": "mteb"``,
    ``results.md``, ``runs/``, ``config.resolved.yaml``) plus ``per_query/<key>.json``. No index
    spec (MTEB searches exhaustively) and no embedding cache (MTEB encodes every time). Re-running
    into the same ``--out`` skips finished datasets; another encoder or engine there is refused
    unless ``overwrite``.
    """
    if cfg.index_dir is not None:
        raise ConfigError("--index-dir scores a built index with --engine ours; MTEB encodes the corpus itself")
    if cfg.encoder is None or cfg.encoder.model == "bm25":
        raise ConfigError("--engine mteb evaluates a model (dense or ColBERT); BM25 and --fuse run with --engine ours")
    if cfg.index is not None:
        raise ConfigError("--spec applies to --engine ours; MTEB searches exhaustively")
    store = ResultsStore(cfg.out, overwrite=overwrite)
    specs = [cfg.suite.dataset(name) for name in cfg.datasets]
    encoder = encoder or encoder_from_config(cfg.encoder, progress=progress)
    return run_suite(MtebRetriever(cfg, encoder, progress=progress), store, cfg, specs)


__all__ = [
    "ENGINE",
    "MTEB_TASKS",
    "LocalRetrievalTask",
    "MtebColBERTModel",
    "MtebDenseModel",
    "MtebRetriever",
    "builtin_task",
    "evaluate_task",
    "local_task",
    "run_eval_mteb",
    "to_mteb",
]
