"""Validated configuration models. Unknown keys are rejected; errors name the file, line and key.

Imports nothing else from the package but ``errors`` and ``metrics`` (for measure names).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.core.types import plural
from mbert_retrieval.results.metrics import parse_measure

DEFAULT_METRICS = ["nDCG@10", "R@100", "RR@10", "MAP@100"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HubSource(Strict):
    """Where a dataset lives on the Hugging Face hub, pinned to a commit, and how its files are laid out.

    Formats (files are read one by one with ``datasets``; see ``data/hub.py``):

    - ``beir``: BEIR tables as ``push_to_hub`` writes them: config ``default`` in ``data/``, any other
      config in a folder of its name, files ``<split>-*.parquet`` (or ``.jsonl``); corpus rows
      ``_id, title, text``, query rows ``_id, text`` (``partition`` if ``queries_partition``), qrels
      rows ``query-id, corpus-id, score``. CoIR datasets (CodeSearchNet, StackOverflow-QA).
    - ``longembed``: ``<config>/corpus.jsonl`` (``doc_id, text``), ``queries.jsonl`` (``qid, text``),
      ``qrels.jsonl`` (``qid, doc_id``), each row possibly with ``context_length`` (needle, passkey).
    - ``mldr``: ``mldr-v1.0-<config>/corpus.jsonl.gz`` (``docid, text``) and ``<split>.jsonl.gz``
      (``query_id, query, positive_passages[{docid, text}]``).
    """

    repo: str = Field(description="hub dataset id, or a local folder holding a copy of the repository's files")
    revision: str = Field(
        pattern=r"^[0-9a-f]{40}$", description="the commit the numbers refer to (40 hex digits): hub data is pinned"
    )
    format: Literal["beir", "longembed", "mldr"]
    config: str | None = Field(None, description="longembed: config (qmsum, needle, ...); mldr: language (en)")
    corpus_config: str = Field("corpus", description="beir: config of the corpus ('{subset}' is replaced)")
    queries_config: str = Field("queries", description="beir: config of the queries ('{subset}' is replaced)")
    qrels_config: str = Field("default", description="beir: config of the qrels ('{subset}' is replaced)")
    corpus_split: str = Field("corpus", description="beir: split name of the corpus files")
    queries_split: str = Field("queries", description="beir: split name of the query files")
    queries_partition: bool = Field(
        False, description="beir: keep only queries whose 'partition' field equals the evaluated split (CoIR)"
    )

    @model_validator(mode="after")
    def _config_needed(self) -> HubSource:
        if self.format in ("longembed", "mldr") and not self.config:
            raise ValueError(f"format {self.format!r} needs 'config'")
        return self


class DatasetSpec(Strict):
    """One dataset of a suite."""

    name: str = Field(description="dataset name; also the folder name under --data-dir unless `folder` is set")
    split: str = Field("test", description="qrels split evaluated by default")
    source: Literal["beir", "stdlib", "hub"] = Field(
        "beir",
        description="beir: a BEIR folder (downloadable by name); stdlib: built from the Python stdlib; "
        "hub: a BEIR folder under --data-dir when present, else the pinned hub copy (with --download)",
    )
    hub: HubSource | None = Field(None, description="source hub: the pinned hub dataset")
    folder: str | None = Field(None, description="folder under --data-dir, if not `name`")
    subsets: list[str] | None = Field(
        None,
        description="parts evaluated separately and averaged: sub-folders (CQADupStack's 12 forums); for hub "
        "sources '{subset}' in config names (CodeSearchNet languages) or context lengths (LongEmbed needle/passkey)",
    )
    ignore_identical_ids: bool = Field(
        False, description="drop a hit whose document id equals the query id (BEIR/MTEB do for ArguAna, Quora)"
    )
    max_docs: int | None = Field(None, ge=1, description="stdlib source only: keep this many examples")
    document_length: int | None = Field(
        None,
        ge=1,
        description="document tokens for this dataset (long documents: 8192): ColBERT document length; "
        "dense models keep their max_seq_length (set it with --max-seq-length); reported with the truncated count",
    )
    main_metric: str | None = Field(None, description="this dataset's headline metric, if not the suite's")
    paper_name: str | None = Field(None, description="the name used in the paper's tables")

    @model_validator(mode="after")
    def _source_options(self) -> DatasetSpec:
        if self.max_docs is not None and self.source != "stdlib":
            raise ValueError("max_docs applies only to source 'stdlib'")
        if self.subsets is not None and not self.subsets:
            raise ValueError("subsets, when given, must not be empty")
        if (self.source == "hub") != (self.hub is not None):
            raise ValueError("source 'hub' and the 'hub' section go together")
        return self

    @property
    def folder_name(self) -> str:
        return self.folder or self.name


class SuiteSpec(Strict):
    """A named set of datasets with the metrics reported for them (``eval/<suite>.yaml``)."""

    name: str
    description: str = ""
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    main_metric: str = "nDCG@10"
    top_k: int = Field(1000, ge=1, description="documents retrieved per query (MTEB: 1000)")
    datasets: list[DatasetSpec]

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one metric is needed")
        for m in v:
            try:
                parse_measure(m)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SuiteSpec:
        if self.main_metric not in self.metrics:
            raise ValueError(f"main_metric {self.main_metric!r} is not among metrics {self.metrics}")
        names = [d.name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset names repeat: {dupes}")
        for d in self.datasets:
            if d.main_metric is not None and d.main_metric not in self.metrics:
                raise ValueError(
                    f"dataset {d.name!r}: main_metric {d.main_metric!r} is not among metrics {self.metrics}"
                )
        deepest = max(parse_measure(m).cutoff for m in self.metrics)
        if self.top_k < deepest:
            raise ValueError(f"top_k {self.top_k} is below the deepest metric cutoff {deepest}")
        return self

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise ConfigError(
            f"suite {self.name!r} has no dataset {name!r}; it has: {', '.join(d.name for d in self.datasets)}"
        )


# --------------------------------------------------------------------------------------------
# Index specs (``indices/<name>.yaml``): which index, with which parameters.


class FaissSpec(Strict):
    """A FAISS index over single vectors, inner product. Memory per vector (dim d): flat/hnsw 4d bytes
    (+ graph links for hnsw), sq fp16 2d, sq int8 d, ivf-pq m*nbits/8 bytes."""

    kind: Literal["faiss"] = "faiss"
    type: Literal["flat", "hnsw", "ivf-flat", "ivf-pq", "sq"] = "flat"
    M: int = Field(32, ge=2, description="hnsw: links per node")
    ef_construction: int = Field(200, ge=1, description="hnsw: build-time beam")
    ef_search: int = Field(128, ge=1, description="hnsw: search-time beam")
    nlist: int = Field(1024, ge=1, description="ivf: number of clusters")
    nprobe: int = Field(16, ge=1, description="ivf: clusters visited per query")
    m: int = Field(64, ge=1, description="ivf-pq: sub-quantisers (must divide dim)")
    nbits: int = Field(8, ge=1, le=16, description="ivf-pq: bits per sub-quantiser code")
    sq_type: Literal["fp16", "int8"] = Field("fp16", description="sq: scalar quantiser")
    train_sample: int = Field(100_000, ge=1, description="ivf: vectors sampled to train the quantiser")

    def factory_string(self) -> str:
        return {
            "flat": "Flat",
            "hnsw": f"HNSW{self.M}",
            "ivf-flat": f"IVF{self.nlist},Flat",
            "ivf-pq": f"IVF{self.nlist},PQ{self.m}x{self.nbits}",
            "sq": "SQfp16" if self.sq_type == "fp16" else "SQ8",
        }[self.type]


class PlaidSpec(Strict):
    """PLAID (fast-plaid) over token vectors: centroids + residual compression."""

    kind: Literal["plaid"] = "plaid"
    nbits: int = Field(4, ge=1, le=8, description="bits per residual dimension")
    kmeans_niters: int = Field(4, ge=1, description="k-means iterations for the centroids")
    n_ivf_probe: int = Field(8, ge=1, description="centroids probed per query token")
    n_full_scores: int = Field(8192, ge=1, description="candidates scored exactly at the end")
    scale_with_k: bool = Field(
        True,
        description="deeper k: n_full_scores raised to at least ColBERT's own setting for k "
        "(256 up to k 10, 1024 up to k 100, max(4096, 4k) beyond)",
    )
    fallback: Literal["error", "exact"] = Field(
        "error", description="too few token vectors for k-means: fail clearly, or use exact MaxSim"
    )
    exact_if_faster: bool = Field(
        False,
        description="on CPU, at the first search: exact MaxSim instead when it is estimated faster than "
        "building PLAID and searching it (eval's ColBERT default, the plaid-auto spec)",
    )
    exact_max_tokens: int = Field(
        8_000_000, ge=0, description="exact_if_faster: corpora above this many token vectors always build PLAID"
    )


class VoyagerSpec(Strict):
    """Voyager HNSW over token vectors; candidates are re-ranked by exact MaxSim."""

    kind: Literal["voyager"] = "voyager"
    M: int = Field(64, ge=2)
    ef_construction: int = Field(200, ge=1)
    ef_search: int = Field(200, ge=1)
    candidates: int = Field(100, ge=1, description="documents per query passed to exact re-ranking")


class ExactMaxSimSpec(Strict):
    """No index: exact MaxSim of every query against every document (the reference)."""

    kind: Literal["exact-maxsim"] = "exact-maxsim"
    dtype: Literal["float16", "float32"] = Field("float16", description="storage of document token vectors")
    block_tokens: int = Field(262_144, ge=1024, description="document tokens scored per matrix product")
    float32_copy_gib: float = Field(
        2.0,
        ge=0,
        description="fp16 storage: a float32 copy is kept in memory up to this size (no conversion per search: "
        "single queries about 3x faster)",
    )


INDEX_KINDS = ("faiss", "plaid", "voyager", "exact-maxsim")
IndexSpec = Annotated[FaissSpec | PlaidSpec | VoyagerSpec | ExactMaxSimSpec, Field(discriminator="kind")]


class IndexSpecFile(Strict):
    """``indices/<name>.yaml``."""

    name: str
    description: str = ""
    index: IndexSpec


def load_index_spec_file(path: str | Path) -> IndexSpecFile:
    data, root = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an index spec file must be a mapping with 'name' and 'index'")
    try:
        return IndexSpecFile.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, path, root)) from None


class EncoderConfig(Strict):
    """How the model is loaded and run."""

    kind: Literal["dense", "colbert"] | None = Field(None, description="default: told from the checkpoint, else dense")
    model: str
    batch_size: int = Field(32, ge=1)
    max_seq_length: int | None = Field(None, ge=1)
    query_prompt: str | None = None
    document_prompt: str | None = None
    normalize: bool | None = None
    device: str | None = None
    trust_remote_code: bool = False
    unpad: bool | None = Field(None, description="ModernBERT on packed tokens (docs/encoding.md); default on")
    # ColBERT only
    query_length: int | None = Field(None, ge=1)
    document_length: int | None = Field(None, ge=1)
    query_expansion: bool | None = None
    embedding_size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _colbert_only(self) -> EncoderConfig:
        if self.kind == "dense":
            given = [
                k
                for k in ("query_length", "document_length", "query_expansion", "embedding_size")
                if getattr(self, k) is not None
            ]
            if given:
                raise ValueError(f"{', '.join(given)} apply to ColBERT models only (kind colbert)")
        return self


BM25_PRESETS: dict[str, dict[str, float]] = {"mteb": {"k1": 1.5, "b": 0.75}, "pyserini": {"k1": 0.9, "b": 0.4}}


class BM25Config(Strict):
    """BM25 (bm25s) settings, used when the model is ``bm25``. Defaults: MTEB's ``baseline-bm25s``."""

    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    stopwords: Literal["en"] | None = Field("en", description="bm25s' English stopword list, or none")
    stemmer: str | None = Field("english", description="PyStemmer (Snowball) language, or none")

    @classmethod
    def preset(cls, name: str) -> BM25Config:
        """``mteb`` (k1 1.5, b 0.75) or ``pyserini`` (k1 0.9, b 0.4; same tokenization)."""
        if name not in BM25_PRESETS:
            raise ConfigError(f"unknown BM25 preset {name!r}; choose from {', '.join(BM25_PRESETS)}")
        return cls(**BM25_PRESETS[name])


class FusionConfig(Strict):
    """Runs to fuse: ``bm25`` (computed on the fly) or result folders of earlier evals (their ``runs/``)."""

    sources: list[str] = Field(min_length=2)
    method: Literal["rrf", "weighted"] = "rrf"
    k: float = Field(60.0, ge=0, description="rrf: rank constant")
    weights: list[float] | None = Field(None, description="one non-negative weight per source (default: all 1)")
    normalisation: Literal["minmax", "zscore"] = Field("minmax", description="weighted: per-query score normalisation")

    @model_validator(mode="after")
    def _weights_match(self) -> FusionConfig:
        if self.weights is not None:
            if len(self.weights) != len(self.sources):
                raise ValueError(f"{plural(len(self.weights), 'weight')} for {plural(len(self.sources), 'source')}")
            if any(w < 0 for w in self.weights):
                raise ValueError("weights must be non-negative")
        return self


class EvalConfig(Strict):
    """Everything an eval run used; saved as ``config.resolved.yaml`` beside its results.

    ``encoder.model == "bm25"`` runs BM25 (``bm25`` settings) instead of a neural encoder; ``fusion``
    instead of ``encoder`` fuses saved runs.
    """

    suite: SuiteSpec
    datasets: list[str]
    split: str | None = None
    data_dir: str | None = None
    download: bool = False
    encoder: EncoderConfig | None = None
    bm25: BM25Config = Field(default_factory=BM25Config, description="used when encoder.model is 'bm25'")
    fusion: FusionConfig | None = None
    index: IndexSpecFile | None = Field(None, description="default: faiss-flat (dense) or plaid-auto (colbert)")
    index_dir: str | None = Field(
        None, description="a built index (index build, or an earlier eval's) scored instead of encoding the corpus"
    )
    top_k: int = Field(1000, ge=1)
    out: str
    cache_dir: str | None = None
    shard_size: int | None = Field(
        None, ge=1, description="documents per embedding shard (default 50,000 dense, 10,000 ColBERT)"
    )

    @model_validator(mode="after")
    def _one_method(self) -> EvalConfig:
        if self.index_dir is not None:
            if self.fusion is not None or self.is_bm25 or self.index is not None:
                raise ValueError("index_dir scores a built index: no fusion, bm25 or index spec with it")
            return self
        if (self.encoder is None) == (self.fusion is None):
            raise ValueError("give either an encoder (a model, or bm25) or a fusion of runs")
        bm25_used = self.encoder is not None and self.encoder.model == "bm25"
        if self.fusion is not None:
            bm25_used = "bm25" in self.fusion.sources
        if not bm25_used and self.bm25 != BM25Config():
            raise ValueError("bm25 settings apply only when the model (or a fused source) is bm25")
        if self.index is not None and (self.fusion is not None or self.is_bm25):
            raise ValueError("an index spec applies to neural models only (not to bm25 or fusion)")
        return self

    @property
    def is_bm25(self) -> bool:
        return self.encoder is not None and self.encoder.model == "bm25"


# --------------------------------------------------------------------------------------------
# Loading YAML with errors that point at the file, line and key.


def node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at key path ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                return line
            line = next(k for k, v in node.value if v is match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def validation_problems(err: ValidationError) -> list[tuple[tuple[Any, ...], str, str]]:
    """``(loc, message, type)`` per problem, the location cleaned of pydantic's validator and
    tagged-union entries, ``extra_forbidden`` worded ``unknown key``."""
    problems = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
        # a tagged union puts the tag in the path (index.plaid.nbits): drop it
        loc = tuple(x for i, x in enumerate(loc) if not (i and loc[i - 1] == "index" and x in INDEX_KINDS))
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        problems.append((loc, msg, e["type"]))
    return problems


def dotted(loc: tuple[Any, ...]) -> str:
    """``('training', 'max_steps')`` -> ``training.max_steps``; ``()`` -> ``(top level)``."""
    return ".".join(str(x) for x in loc) or "(top level)"


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path of a schema, sections and leaves (``training``, ``training.learning_rate``...),
    for "did you mean" hints."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        for sub in _models_in(info.annotation):
            paths.extend(p for p in field_paths(sub, f"{path}.") if p not in paths)
    return paths


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def did_you_mean(key: str, choices: list[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices`` as deep as ``key`` (difflib), or ``""``."""
    depth = key.count(".")
    close = difflib.get_close_matches(key, [c for c in choices if c.count(".") == depth], n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def as_option_error(error: Exception) -> Exception:
    """A ``ValidationError`` of a config built from command-line options as one ``ConfigError`` naming
    the options (``invalid option --batch-size: ...``); any other exception is returned unchanged."""
    if not isinstance(error, ValidationError):
        return error
    problems = [
        f"--{str(err['loc'][-1]).replace('_', '-')}: {err['msg'].removeprefix('Value error, ')}"
        if err["loc"]
        else err["msg"].removeprefix("Value error, ")
        for err in error.errors()
    ]
    return ConfigError("invalid option " + "; ".join(problems))


def format_validation_error(err: ValidationError, path: str | Path | None = None, root: yaml.Node | None = None) -> str:
    """One line per problem: ``file:line: key.path: message``."""
    lines = []
    for loc, msg, _ in validation_problems(err):
        where = ""
        if path is not None:
            line = node_line(root, loc)
            where = f"{path}:{line}: " if line else f"{path}: "
        lines.append(f"{where}{dotted(loc)}: {msg}")
    return "; ".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may override merged keys
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file safely; returns the data and its node tree (for line numbers)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    return data, root


def load_suite_file(path: str | Path) -> SuiteSpec:
    data, root = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite file must be a mapping with at least 'name' and 'datasets'")
    try:
        return SuiteSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, path, root)) from None
