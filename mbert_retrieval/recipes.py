"""Training recipes (``recipes/*.yaml``): a typed schema, ``key.sub=value`` overrides, validation.

Every recipe has ``model.base`` and a top-level ``output_dir``, so
``mbert-retrieval train R model.base=PATH output_dir=DIR`` always works. Unknown keys and wrong
types are rejected with the file, line and key path, or with the override as given on the command
line. Relative paths written in a recipe file are looked for beside the file first, then from the
working directory (``RECIPE_PATHS``); overrides and ``output_dir`` are relative to the working directory.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from mbert_retrieval.config import Strict, did_you_mean, dotted, field_paths, load_yaml, node_line, validation_problems
from mbert_retrieval.core.errors import ConfigError

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
    # path key -> (where it was written: "file:line" or "override 'k=v'", [(how, absolute path tried)])
    _looked: dict[str, tuple[str, list[tuple[str, str]]]] = PrivateAttr(default_factory=dict)

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


def _set(data: dict[str, Any], item: str, dotted_key: str, value: Any) -> None:
    node = data
    keys = dotted_key.split(".")
    for key in keys[:-1]:
        if node.get(key) is None:
            node[key] = {}
        elif not isinstance(node[key], dict):
            raise ConfigError(f"override {item!r}: {key!r} is not a section")
        node = node[key]
    node[keys[-1]] = value


def _parse_override(item: str) -> tuple[str, Any]:
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
    return key, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` pairs. Values stay strings for the schema to convert (``1e-4`` -> float,
    ``32`` -> int, ``true`` -> bool, and a path stays a path); ``null`` means None; ``[...]`` and
    ``{...}`` are parsed as YAML. Errors name the override as given on the command line."""
    for item in overrides:
        key, value = _parse_override(item)
        _set(data, item, key, value)
    return data


def _override_label(items: list[str]) -> str:
    return f"override {items[0]!r}" if len(items) == 1 else "overrides " + ", ".join(repr(i) for i in items)


def _problems(data: dict[str, Any], overrides: list[str]) -> set[tuple[tuple[Any, ...], str]] | None:
    """The validation problems of ``data`` with ``overrides`` (None: the overrides do not apply)."""
    try:
        merged = apply_overrides(copy.deepcopy(data), overrides)
        Recipe.model_validate(merged)
    except ConfigError:
        return None
    except ValidationError as e:
        return {(loc, msg) for loc, msg, _ in validation_problems(e)}
    return set()


def _recipe_error(
    err: ValidationError, path: str | Path, root: yaml.Node | None, data: dict[str, Any], overrides: list[str]
) -> str:
    """One line per problem. A problem the file has on its own names the file and line; one an
    override brought names the override (``override 'training.max_steps=x': training.max_steps: ...``):
    the one setting that key, else those without which the problem goes away. Unknown keys get the
    closest schema key."""
    paths = field_paths(Recipe)
    keys = {item: item.split("=", 1)[0] for item in overrides}
    in_file = _problems(data, []) if overrides else None
    without: dict[str, set[tuple[tuple[Any, ...], str]] | None] = {}  # override -> problems when left out
    lines = []
    for loc, msg, kind in validation_problems(err):
        key = ".".join(str(x) for x in loc)
        culprits = [i for i, k in keys.items() if k == key]
        if overrides and not culprits and in_file is not None and (loc, msg) not in in_file:
            without = without or {i: _problems(data, [o for o in overrides if o != i]) for i in overrides}
            culprits = [i for i, found in without.items() if found is not None and (loc, msg) not in found]
            culprits = culprits or [i for i, k in keys.items() if not key or k.startswith(f"{key}.")] or overrides
        if culprits:
            where = _override_label(culprits)
            if kind == "extra_forbidden":
                given = keys[culprits[0]]  # a misspelt section (`trainig.learning_rate=1`): the whole key given
                unknown = given if given == key or given.startswith(f"{key}.") else key
                hint, what = did_you_mean(unknown, paths), repr(unknown)
                if not hint and unknown != key:  # no close key path: the closest section, if any
                    hint, what = did_you_mean(key, paths), f"{key!r} (in {unknown!r})"
                lines.append(f"{where}: unknown key {what}{hint}")
            else:
                lines.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
            continue
        line = node_line(root, loc)
        where = f"{path}:{line}" if line else str(path)
        hint = did_you_mean(key, paths) if kind == "extra_forbidden" else ""
        lines.append(f"{where}: {dotted(loc)}: {msg}{hint}")
    return "; ".join(lines)


# Paths written in a recipe file are looked for beside the file first, then from the working
# directory (the first that exists wins); overrides and output_dir are taken from the working
# directory. model.base may be a hub id: it is only resolved when the recipe-relative path exists.
RECIPE_PATHS = ("model.base", "data.train.path", "data.eval.beir")
CHECKED_PATHS = ("data.train.path", "data.eval.beir")


def _get(recipe: Recipe, key: str) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _put(recipe: Recipe, key: str, value: str) -> None:
    *parents, last = key.split(".")
    node: Any = recipe
    for part in parents:
        node = getattr(node, part)
    setattr(node, last, value)


def _absolute(path: Path) -> str:
    return os.path.normpath(path.absolute())


def _resolve_paths(recipe: Recipe, path: str | Path, root: yaml.Node | None, overrides: list[str]) -> None:
    folder = Path(path).parent
    for key in RECIPE_PATHS:
        value = _get(recipe, key)
        if not isinstance(value, str) or not value:
            continue
        candidate = Path(value).expanduser()
        # the last override setting the key, or a section above it (`data.train={source: triples, path: x}`)
        setter = [i for i in overrides if key == (k := i.split("=", 1)[0]) or key.startswith(f"{k}.")][-1:]
        if setter:
            looked = [] if candidate.is_absolute() else [("from the working directory", _absolute(candidate))]
            recipe._looked[key] = (f"override {setter[0]!r}", looked)
            continue
        line = node_line(root, tuple(key.split(".")))
        where = f"{path}:{line}" if line else str(path)
        if candidate.is_absolute():
            recipe._looked[key] = (where, [])
            continue
        beside, here = _absolute(folder / candidate), _absolute(candidate)
        if beside == here:
            looked = [("beside the recipe and from the working directory", here)]
        elif os.path.exists(beside):
            _put(recipe, key, beside)
            looked = []
        else:
            looked = [("beside the recipe", beside), ("from the working directory", here)]
        recipe._looked[key] = (where, looked)


def check_recipe_paths(recipe: Recipe) -> None:
    """Refuse local inputs that do not exist (``data.train.path``, ``data.eval.beir``) before any work;
    the error names where the path was written and every place it was looked for.

    Not part of the schema: a recipe may be validated on one machine and run on another."""
    for key in CHECKED_PATHS:
        value = _get(recipe, key)
        if value is None or Path(value).expanduser().exists():
            continue
        candidate = Path(value).expanduser()
        default = [] if candidate.is_absolute() else [("from the working directory", _absolute(candidate))]
        where, looked = recipe._looked.get(key, ("", default))
        detail = f" (looked {'; and '.join(f'{how}: {p}' for how, p in looked)})" if looked else ""
        raise ConfigError(f"{where + ': ' if where else ''}{key}: {value}: not found{detail}")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe; errors name the file, line and key path (or the
    override). Relative paths written in the file are resolved beside it first (``RECIPE_PATHS``)."""
    data, root = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping with at least name, kind, output_dir, model, data, loss")
    overrides = list(overrides or [])
    merged = apply_overrides(copy.deepcopy(data), overrides) if overrides else data
    try:
        recipe = Recipe.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_recipe_error(e, path, root, data, overrides)) from None
    _resolve_paths(recipe, path, root, overrides)
    return recipe


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def dump_recipe(recipe: Recipe, *, nulls: bool = True, batch: dict[str, Any] | None = None) -> str:
    """The recipe as YAML. ``nulls=False`` leaves out the keys whose value is null (``intent``,
    ``data.eval``...): every such key defaults to null, so the text loads back to the same recipe.
    ``batch`` (``train --dry-run``'s batch summary) is appended as a ``batch:`` mapping."""
    data = recipe.model_dump(mode="json")
    if not nulls:
        data = _without_nulls(data)
    if batch is not None:
        data["batch"] = batch
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
