"""Training recipes (``recipes/*.yaml``): a typed schema, ``key.sub=value`` overrides, validation.

Every recipe has ``model.base`` and a top-level ``output_dir``, so
``mbert-retrieval train R model.base=PATH output_dir=DIR`` always works. Unknown keys and wrong
types are rejected with the file, line and key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from .config import Strict, format_validation_error, load_yaml
from .errors import ConfigError

DENSE_LOSSES = ("mnrl", "cached_mnrl", "margin_mse", "distill_kl")
COLBERT_LOSSES = ("contrastive", "cached_contrastive", "distillation")


class ModelSection(Strict):
    base: str = Field(description="hub id or local path of the encoder to fine-tune")
    max_seq_length: int | None = Field(None, ge=1, description="dense: tokens per text (default: the model's)")
    pooling: Literal["mean", "cls"] = Field("mean", description="dense: pooling added to a plain encoder")
    query_prompt: str | None = None
    document_prompt: str | None = None
    # ColBERT
    query_length: int = Field(32, ge=1)
    document_length: int = Field(180, ge=1)
    embedding_size: int = Field(128, ge=1)
    query_expansion: bool = True


class TrainData(Strict):
    """Where training rows come from. Columns: ``query``, ``positive``, ``negative_*`` (and ``scores``)."""

    source: Literal["beir-qrels", "triples", "distillation", "hub-triplets", "hub-distillation", "mldr"]
    path: str | None = Field(None, description="BEIR folder, or a TSV/JSONL file (mldr: a local train JSONL)")
    split: str = Field("train", description="beir-qrels: the qrels split turned into (query, positive) pairs")
    hub_id: str | None = Field(None, description="hub dataset id (hub-* sources)")
    subset: str | None = Field(None, description="hub dataset config, e.g. triplet-hard (mldr: the language, en)")
    max_rows: int | None = Field(None, ge=1, description="keep the first N rows")
    n_ways: int = Field(32, ge=2, description="distillation: documents per query (ColBERT KD default 32)")
    num_negatives: int = Field(1, ge=0, description="mldr: hard negatives per row taken from the data")

    @model_validator(mode="after")
    def _where(self) -> TrainData:
        if self.source == "mldr":
            if not (self.path or self.hub_id):
                raise ValueError("source 'mldr' needs path (a local train JSONL) or hub_id (Shitao/MLDR)")
            return self
        if self.source.startswith("hub") and not self.hub_id:
            raise ValueError(f"source {self.source!r} needs hub_id")
        if not self.source.startswith("hub") and not self.path:
            raise ValueError(f"source {self.source!r} needs path")
        return self


class EvalData(Strict):
    """A small retrieval set scored during training (nDCG@10); the best checkpoint is kept."""

    beir: str = Field(description="a local BEIR folder")
    split: str = "test"
    max_queries: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1, description="evaluate every N steps (default: each epoch)")


class DataSection(Strict):
    train: TrainData
    eval: EvalData | None = None


class LossSection(Strict):
    name: Literal[
        "mnrl", "cached_mnrl", "margin_mse", "distill_kl", "contrastive", "cached_contrastive", "distillation"
    ]
    scale: float = Field(20.0, gt=0, description="mnrl: similarity scale (1 / temperature)")
    mini_batch_size: int = Field(16, ge=1, description="cached losses: GradCache mini-batch")
    gather_across_devices: bool = Field(False, description="cross-device in-batch negatives (multi-GPU)")


class TrainingSection(Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs")
    batch_size: int = Field(32, ge=1, description="per device")
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(0.01, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU that has it")
    batch_sampler: Literal["no_duplicates", "batch_sampler"] = "no_duplicates"
    logging_steps: int = Field(10, ge=1)
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps (default: each epoch)")
    save_total_limit: int = Field(2, ge=1)
    num_devices: int | None = Field(None, ge=1, description="the paper's device count, for the batch summary")


class Recipe(Strict):
    name: str
    description: str = ""
    kind: Literal["dense", "colbert"]
    output_dir: str
    seed: int = 42
    model: ModelSection
    data: DataSection
    loss: LossSection
    training: TrainingSection = Field(default_factory=TrainingSection)
    intent: str | None = Field(None, description="the batch the recipe means, e.g. '512 = 64 x 8 on 8 GPUs'")

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        allowed = DENSE_LOSSES if self.kind == "dense" else COLBERT_LOSSES
        if self.loss.name not in allowed:
            raise ValueError(f"loss {self.loss.name!r} is not for {self.kind} models; use one of {list(allowed)}")
        teacher = self.loss.name in ("margin_mse", "distill_kl", "distillation")
        has_scores = self.data.train.source in ("distillation", "hub-distillation")
        if teacher and not has_scores:
            raise ValueError(
                f"loss {self.loss.name!r} needs teacher scores: data.train.source must be a distillation one"
            )
        if has_scores and not teacher:
            raise ValueError(f"data with teacher scores goes with a distillation loss, not {self.loss.name!r}")
        if self.loss.name.startswith("cached") and self.loss.mini_batch_size > self.training.batch_size:
            raise ValueError("loss.mini_batch_size is larger than training.batch_size")
        return self


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise ConfigError(f"override {dotted}: {key!r} is not a section")
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` pairs. Values stay strings for the schema to convert (``1e-4`` -> float,
    ``32`` -> int, ``true`` -> bool, and a path stays a path); ``null`` means None; ``[...]`` and
    ``{...}`` are parsed as YAML."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        if not key or not all(part.isidentifier() for part in key.split(".")):
            raise ConfigError(f"override {item!r}: {key!r} is not a key path")
        value: Any = raw
        if raw in ("null", "~", "None"):
            value = None
        elif raw.startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise ConfigError(f"override {item!r}: {str(e).splitlines()[0]}") from None
        _set(data, key, value)
    return data


def check_recipe_paths(recipe: Recipe) -> None:
    """Refuse local inputs that do not exist (``data.train.path``, ``data.eval.beir``) before any work.

    Not part of the schema: a recipe may be validated on one machine and run on another."""
    train = recipe.data.train
    checks = [("data.train.path", train.path)] if train.path else []
    if recipe.data.eval is not None:
        checks.append(("data.eval.beir", recipe.data.eval.beir))
    for key, value in checks:
        if not Path(value).expanduser().exists():
            raise ConfigError(f"{value}: {key}: not found")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe; errors name the file, line and key path."""
    data, root = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping with at least name, kind, output_dir, model, data, loss")
    if overrides:
        data = apply_overrides(data, overrides)
        root = None  # line numbers no longer match the file
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, path, root)) from None


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
