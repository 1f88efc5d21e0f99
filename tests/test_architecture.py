"""The boundaries of docs/architecture.md, held by a test."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mbert_retrieval"

# third-party library -> the one module allowed to import it
OWNERS = {
    # the model wrappers for inference, training/ (model, losses, trainer arguments, trainer) for training, and
    # export.py (writes PyLate's layout from a sentence-transformers multi-vector model)
    "sentence_transformers": {
        "encoders/dense.py",
        "encoders/colbert.py",
        "encoders/export.py",
        "training/model.py",
        "training/losses.py",
        "training/arguments.py",
        "training/trainer.py",
    },
    "datasets": {"data/training.py", "data/hub.py"},
    "faiss": {"indexes/faiss_index.py"},
    "transformers": {"encoders/backend.py", "encoders/modernbert.py", "encoders/unpadded.py"},
    "tokenizers": {"encoders/modernbert.py"},
    # PyLate 1.6 pins sentence-transformers 5.3: no module may import it (its checkpoints load through ST 6)
    "pylate": set(),
    "fast_plaid": {"indexes/plaid.py"},
    "voyager": {"indexes/voyager.py"},
    "flash_attn": {"encoders/unpadded.py"},
    "bm25s": {"retrieval/bm25.py"},
    "Stemmer": {"retrieval/bm25.py"},
    "mteb": {"retrieval/mteb.py"},
    "matplotlib": {"report/plots.py"},
    "pydantic": {"config.py", "recipes.py", "cli/app.py"},
}
# internal layering: module -> internal modules it must not import
FORBIDDEN = {
    "types.py": {"*"},
    "errors.py": {"*"},
    "metrics.py": {"encoders", "indexes", "pipeline", "data", "cli"},
    "indexes": {"encoders", "pipeline", "data", "metrics", "cli", "catalog"},
    "encoders": {"indexes", "pipeline", "data", "metrics", "cli"},
    "data": {"encoders", "indexes", "pipeline", "metrics", "cli"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            if not node.level:  # `from pylate import models` imports pylate.models
                found |= {f"{base}.{a.name}" for a in node.names}
            if node.level and not node.module:
                found |= {"." * node.level + a.name for a in node.names}
    return found


def _modules() -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_each_third_party_library_is_imported_in_its_own_module() -> None:
    for rel, imports in _modules().items():
        for lib, owners in OWNERS.items():
            if any(i == lib or i.startswith(lib + ".") for i in imports):
                assert rel in owners, f"{rel} imports {lib}; only {sorted(owners) or 'no module yet'} may"


def _internal(rel: str, imp: str) -> str | None:
    """The top-level internal module an import refers to, or None for third-party imports."""
    if imp.startswith("mbert_retrieval"):
        parts = imp.split(".")[1:]
    elif imp.startswith("."):
        level = len(imp) - len(imp.lstrip("."))
        here = Path(rel).parent.parts
        base = list(here[: len(here) - (level - 1)]) if level > 1 else list(here)
        parts = base + [p for p in imp.lstrip(".").split(".") if p]
    else:
        return None
    return parts[0] if parts else None


def test_layering() -> None:
    for rel, imports in _modules().items():
        top = rel.split("/")[0]
        rule = FORBIDDEN.get(rel) or FORBIDDEN.get(top)
        if not rule:
            continue
        for imp in imports:
            target = _internal(rel, imp)
            if target is None:
                continue
            target = target.removesuffix(".py")
            if target == top.removesuffix(".py"):
                continue
            allowed = target in {"errors", "types", "io"} or (rel == "metrics.py" and target == "errors")
            if "*" in rule:
                assert target in {"errors"} and rel != "errors.py", f"{rel} imports internal {target}"
            else:
                assert allowed or target not in rule, f"{rel} must not import {target}"


def test_import_is_light() -> None:
    code = (
        "import sys, mbert_retrieval, mbert_retrieval.cli.app, mbert_retrieval.config, mbert_retrieval.results.metrics;"
        "heavy = ('torch', 'sentence_transformers', 'faiss', 'fast_plaid', 'voyager', 'transformers');"
        "heavy = [m for m in heavy if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the package pulled in {out}"
