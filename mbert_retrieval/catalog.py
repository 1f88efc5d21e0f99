"""The shipped YAML files — suites (``eval/``), index specs (``indices/``) — found by name or path.

In a source checkout or editable install they are read from the repository's top-level folders;
a wheel carries copies under ``mbert_retrieval/_resources/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .config import IndexSpecFile, SuiteSpec, load_index_spec_file, load_suite_file
from .errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent
T = TypeVar("T")


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
