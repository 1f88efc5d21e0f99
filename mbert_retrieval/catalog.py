"""The shipped YAML files — suites (``eval/``), index specs (``indices/``), recipes (``recipes/``) —
found by name or path.

In a source checkout or editable install they are read from the repository's top-level folders;
a wheel carries copies under ``mbert_retrieval/_resources/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mbert_retrieval.config import IndexSpecFile, SuiteSpec, load_index_spec_file, load_suite_file, load_yaml
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.recipes import Recipe, load_recipe

_PACKAGE = Path(__file__).resolve().parent
T = TypeVar("T")
RECIPE_KEYS = {"kind", "output_dir", "seed", "model", "data", "loss", "training", "intent"}


def _dirs(folder: str) -> list[Path]:
    candidates = [_PACKAGE.parent / folder, _PACKAGE / "_resources" / folder]
    return [d for d in candidates if d.is_dir()]


def _list(folder: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in _dirs(folder):
        for f in sorted(d.glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def _load(name_or_path: str | Path, folder: str, what: str, loader: Callable[[Path], T]) -> T:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return loader(path)
    shipped = _list(folder)
    if str(name_or_path) not in shipped:
        raise ConfigError(f"unknown {what} {str(name_or_path)!r}; shipped: {', '.join(shipped) or 'none'}")
    return loader(shipped[str(name_or_path)])


def list_suites() -> dict[str, Path]:
    """Shipped suites by name (file stem of ``eval/*.yaml``)."""
    return _list("eval")


def load_suite(name_or_path: str | Path) -> SuiteSpec:
    """A shipped suite by name (``beir``) or any suite file by path."""
    return _load(name_or_path, "eval", "suite", load_suite_file)


def list_index_specs() -> dict[str, Path]:
    """Shipped index specs by name (file stem of ``indices/*.yaml``)."""
    return _list("indices")


def load_index_spec(name_or_path: str | Path) -> IndexSpecFile:
    """A shipped index spec by name (``plaid``, ``faiss-hnsw``) or any spec file by path."""
    return _load(name_or_path, "indices", "index spec", load_index_spec_file)


def list_recipes() -> dict[str, Path]:
    """Shipped training recipes by name (file stem of ``recipes/*.yaml``)."""
    return _list("recipes")


def load_recipe_by_name(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """A shipped recipe by name (``scifact-dense``) or any recipe file by path, with overrides."""
    return _load(name_or_path, "recipes", "recipe", lambda p: load_recipe(p, overrides))


def validate_file(path: str | Path) -> str:
    """Validate a suite, index spec or recipe; returns which it is. Told by content: a recipe has
    ``kind`` and ``loss``, an index spec ``index``, a suite ``datasets``."""
    data, _ = load_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty (expected a recipe, an index spec or a suite)")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping (a recipe, an index spec or a suite), got a {type(data).__name__}"
        )
    if "loss" in data or (RECIPE_KEYS & data.keys() and "index" not in data and "datasets" not in data):
        load_recipe(path)  # a recipe missing `loss` is told what is missing, not that it is no recipe
        return "recipe"
    if isinstance(data, dict) and "index" in data:
        load_index_spec_file(path)
        return "index spec"
    if isinstance(data, dict) and "datasets" in data:
        load_suite_file(path)
        return "suite"
    raise ConfigError(f"{path}: neither a recipe (has loss), an index spec (has index) nor a suite (has datasets)")


def beir_folders_suite(folders: list[str]) -> SuiteSpec:
    """A suite of local BEIR folders (``eval --beir DIR...``): one dataset per folder, named after it.

    Each folder must exist; two folders of the same name are told apart by their parent's name."""
    from mbert_retrieval.config import DatasetSpec
    from mbert_retrieval.core.errors import DataError

    paths = [Path(f).expanduser().absolute() for f in folders]
    for path in paths:
        if not path.is_dir():
            raise DataError(path, "not a folder; --beir takes BEIR folders (corpus.jsonl, queries.jsonl, qrels/)")
    names = [p.name for p in paths]
    if len(set(paths)) != len(paths):
        raise ConfigError(
            f"--beir names the same folder twice: {', '.join(sorted({str(p) for p in paths if paths.count(p) > 1}))}"
        )
    names = [f"{p.parent.name}-{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
    datasets = [DatasetSpec(name=n, folder=str(p)) for n, p in zip(names, paths, strict=True)]
    return SuiteSpec(name="beir-folders", description="local BEIR folders given with --beir", datasets=datasets)


def suites_holding(names: list[str], other_than: str) -> str:
    """'; suite X has it as Y' for each name that another shipped suite lists (as a dataset or a folder),
    and how to evaluate a folder of any name; for the "no such dataset" error."""
    hints = []
    for name in names:
        for suite_name, path in list_suites().items():
            if suite_name == other_than:
                continue
            try:
                suite = load_suite(path)
            except ConfigError:
                continue
            for d in suite.datasets:
                if name in (d.name, d.folder_name):
                    folder = f" (folder {d.folder_name})" if d.folder_name != d.name else ""
                    how = f"--suite {suite_name} --datasets {d.name}"
                    hints.append(f"suite {suite_name!r} has {name!r} as {d.name!r}{folder}: {how}")
    hint = "; ".join(hints)
    return (f"; {hint}" if hint else "") + "; any local BEIR folder: --beir DIR"
