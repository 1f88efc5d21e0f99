"""Where suite definitions live and how a suite is found by name or path."""

from __future__ import annotations

from pathlib import Path

from .config import SuiteSpec, load_suite_file
from .errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent


def suite_dirs() -> list[Path]:
    """The repository's ``eval/`` (source checkout, editable install) and the copy inside a wheel."""
    candidates = [_PACKAGE.parent / "eval", _PACKAGE / "_resources" / "eval"]
    return [d for d in candidates if d.is_dir()]


def list_suites() -> dict[str, Path]:
    """Shipped suites by name (file stem)."""
    found: dict[str, Path] = {}
    for d in suite_dirs():
        for f in sorted(d.glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def load_suite(name_or_path: str | Path) -> SuiteSpec:
    """A shipped suite by name (``beir``) or any suite file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_suite_file(path)
    shipped = list_suites()
    if str(name_or_path) not in shipped:
        raise ConfigError(f"unknown suite {name_or_path!r}; shipped suites: {', '.join(shipped) or 'none'}")
    return load_suite_file(shipped[str(name_or_path)])
