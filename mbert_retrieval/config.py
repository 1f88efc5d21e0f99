"""Validated configuration models. Unknown keys are rejected; errors name the file, line and key.

Imports nothing else from the package but ``errors`` and ``metrics`` (for measure names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .metrics import parse_measure

DEFAULT_METRICS = ["nDCG@10", "R@100", "RR@10", "MAP@100"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetSpec(Strict):
    """One dataset of a suite."""

    name: str = Field(description="dataset name; also the folder name under --data-dir unless `folder` is set")
    split: str = Field("test", description="qrels split evaluated by default")
    source: Literal["beir", "stdlib"] = Field(
        "beir", description="beir: a BEIR folder (downloadable by name); stdlib: built from the Python stdlib"
    )
    folder: str | None = Field(None, description="folder under --data-dir, if not `name`")
    subsets: list[str] | None = Field(
        None, description="sub-folders evaluated separately and averaged (CQADupStack's 12 forums)"
    )
    ignore_identical_ids: bool = Field(
        False, description="drop a hit whose document id equals the query id (BEIR/MTEB do for ArguAna, Quora)"
    )
    max_docs: int | None = Field(None, ge=1, description="stdlib source only: keep this many examples")
    document_length: int | None = Field(
        None, ge=1, description="ColBERT document tokens for this dataset (long documents: up to 8192)"
    )
    paper_name: str | None = Field(None, description="the name used in the paper's tables")

    @model_validator(mode="after")
    def _source_options(self) -> DatasetSpec:
        if self.max_docs is not None and self.source != "stdlib":
            raise ValueError("max_docs applies only to source 'stdlib'")
        if self.subsets is not None and not self.subsets:
            raise ValueError("subsets, when given, must not be empty")
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
    """PLAID (fast-plaid through PyLate) over token vectors: centroids + residual compression."""

    kind: Literal["plaid"] = "plaid"
    nbits: int = Field(4, ge=1, le=8, description="bits per residual dimension")
    kmeans_niters: int = Field(4, ge=1, description="k-means iterations for the centroids")
    n_ivf_probe: int = Field(8, ge=1, description="centroids probed per query token")
    n_full_scores: int = Field(8192, ge=1, description="candidates scored exactly at the end")
    fallback: Literal["error", "exact"] = Field(
        "error", description="too few token vectors for k-means: fail clearly, or use exact MaxSim"
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


class EvalConfig(Strict):
    """Everything an eval run used; saved as ``config.resolved.yaml`` beside its results."""

    suite: SuiteSpec
    datasets: list[str]
    split: str | None = None
    data_dir: str | None = None
    download: bool = False
    encoder: EncoderConfig
    index: IndexSpecFile | None = Field(None, description="default: faiss-flat (dense) or plaid (colbert)")
    top_k: int = Field(1000, ge=1)
    out: str
    cache_dir: str | None = None


# --------------------------------------------------------------------------------------------
# Loading YAML with errors that point at the file, line and key.


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
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


def format_validation_error(err: ValidationError, path: str | Path | None = None, root: yaml.Node | None = None) -> str:
    """One line per problem: ``file:line: key.path: message``."""
    lines = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
        # a tagged union puts the tag in the path (index.plaid.nbits): drop it
        loc = tuple(x for i, x in enumerate(loc) if not (i and loc[i - 1] == "index" and x in INDEX_KINDS))
        key = ".".join(str(x) for x in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        where = ""
        if path is not None:
            line = _node_line(root, loc)
            where = f"{path}:{line}: " if line else f"{path}: "
        lines.append(f"{where}{key}: {msg}")
    return "; ".join(lines)


def load_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file safely; returns the data and its node tree (for line numbers)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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
