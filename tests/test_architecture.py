"""The boundaries of docs/architecture.md, held by a test: which module may import which third-party
library, which package may import which, nothing imports ``cli``, ``flows`` only from ``cli``, no import
cycle, a small package root, and a light ``import mbert_retrieval``."""

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
    "pydantic": {"config.py", "recipes.py"},
}
# internal layering: package (or root module) -> the internal packages it may import. Every package and
# root module must be listed, so a new one states its place. Imports inside functions count too.
ALLOWED: dict[str, set[str]] = {
    "core": set(),  # errors, types, io, lock, versions, checkpoint, distributed
    "results": {"core"},  # metrics, runs, stats, tables, the results.json store
    "config": {"core", "results"},  # schemas (metric names are parsed by results.metrics)
    "recipes": {"core", "config"},
    "catalog": {"core", "config", "recipes"},
    "data": {"core", "config"},
    "encoders": {"core", "config"},
    "indexes": {"core", "config"},  # storage: never models, data, or the read side
    "training": {"core", "config", "recipes", "data", "encoders", "results"},
    "retrieval": {"core", "config", "data", "encoders", "indexes", "results"},  # the read side
    "report": {"core", "config", "catalog", "data", "results"},
    "flows": {
        "core",
        "config",
        "recipes",
        "catalog",
        "data",
        "encoders",
        "indexes",
        "training",
        "retrieval",
        "results",
        "report",
    },  # one module per command: orchestration
    "__main__": {"cli"},
    "__init__": {"flows", "encoders", "retrieval", "config", "catalog", "recipes"},  # the lazy public API
}
ALLOWED["cli"] = ALLOWED["flows"] | {"flows", "__init__"}  # argparse, then calls
ROOT_MODULES_AT_MOST = 6  # __init__, __main__, config, recipes, catalog: the rest lives in packages


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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only: no dependency at run time)."""
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        for body in node.body
        for n in ast.walk(body)
    }
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def _internal_graph() -> dict[str, set[str]]:
    """module -> the internal modules it imports (``mbert_retrieval.x.y`` as ``x.y``; the package itself as '')."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{name}: relative import; internal imports are absolute (mbert_retrieval.x)")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mbert_retrieval":
                base = node.module.removeprefix("mbert_retrieval").lstrip(".")
                deps |= {
                    f"{base}.{a.name}".lstrip(".") if f"{base}.{a.name}".lstrip(".") in paths else base
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                deps |= {
                    a.name.removeprefix("mbert_retrieval.") for a in node.names if a.name.startswith("mbert_retrieval.")
                }
        graph[name] = deps - {name}
    return graph


def _top(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


def test_every_package_has_a_layering_rule() -> None:
    tops = {_top(m) for m in _internal_graph()}
    assert tops == set(ALLOWED), (
        f"add a rule to ALLOWED for {sorted(tops - set(ALLOWED))}; stale: {sorted(set(ALLOWED) - tops)}"
    )


def test_layering() -> None:
    for module, deps in _internal_graph().items():
        for dep in deps:
            here, there = _top(module), _top(dep)
            assert here == there or there in ALLOWED[here], f"{module} imports {dep}: {here} may not import {there}"


def test_nothing_imports_cli_and_flows_only_from_cli() -> None:
    for module, deps in _internal_graph().items():
        for dep in deps:
            if _top(dep) == "cli":
                assert _top(module) in {"cli", "__main__"}, f"{module} imports {dep}: nothing imports the CLI"
            if _top(dep) == "flows":
                assert _top(module) in {"flows", "cli", "__init__"}, (
                    f"{module} imports {dep}: flows are called from cli"
                )


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or through others (function-level imports included)."""
    graph = _internal_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [module, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep in graph and dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_package_root_is_small() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= ROOT_MODULES_AT_MOST, f"{len(root)} modules at the package root: {root}"


def test_import_is_light() -> None:
    code = (
        "import sys, mbert_retrieval, mbert_retrieval.cli.app, mbert_retrieval.config, mbert_retrieval.results.metrics;"
        "heavy = ('torch', 'sentence_transformers', 'faiss', 'fast_plaid', 'voyager', 'transformers');"
        "heavy = [m for m in heavy if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the package pulled in {out}"


def test_public_api_names_resolve() -> None:
    """``from mbert_retrieval import X`` for every name of the lazy public API (README's Python section)."""
    import mbert_retrieval

    for name in mbert_retrieval._API:
        assert getattr(mbert_retrieval, name) is not None, name
    assert set(mbert_retrieval.__all__) == {"__version__", *mbert_retrieval._API}


def test_cycle_check_finds_a_cycle(monkeypatch) -> None:
    """The cycle test itself: a made-up graph with a -> b -> c -> a is refused, naming the cycle."""
    import pytest

    monkeypatch.setattr(sys.modules[__name__], "_internal_graph", lambda: {"a": {"b"}, "b": {"c"}, "c": {"a"}})
    with pytest.raises(AssertionError, match="import cycle: a -> b -> c -> a"):
        test_no_import_cycle()
