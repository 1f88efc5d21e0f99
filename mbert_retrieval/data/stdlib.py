"""An embedded code-search dataset built at run time from the running interpreter's standard library.

Every machine that runs this toolkit has it, it needs no download, and its licence (PSF) allows
this use. Query = the first sentence of a public function's, method's or class's docstring;
document = that definition's source with the docstring removed. Split by module (a module is
wholly in train or wholly in test), so no test answer was seen in training.

Sources are parsed with ``ast``; nothing is imported or executed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import re
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_path, write_json, write_lines

log = logging.getLogger(__name__)

# Packages of the standard library that are tests, demos, vendored code or tooling, not library API.
_SKIP_DIRS = {
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "turtledemo",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "ensurepip",
    "__pycache__",
    "pydoc_data",
    "venv",
    "config-3",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class CodeExample:
    module: str
    qualname: str
    query: str
    code: str

    @property
    def doc_id(self) -> str:
        return f"{self.module}:{self.qualname}"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _first_sentence(doc: str) -> str:
    paragraph = doc.strip().split("\n\n", 1)[0]
    paragraph = " ".join(paragraph.split())
    return _SENTENCE_END.split(paragraph, 1)[0].strip()


def _strip_docstring(source_lines: list[str], node: ast.AST) -> str | None:
    body = node.body  # type: ignore[attr-defined]
    doc_node = body[0]
    if len(body) == 1:
        return None  # nothing but a docstring: no code to find
    start = node.lineno - 1  # type: ignore[attr-defined]
    if getattr(node, "decorator_list", None):
        start = min(d.lineno for d in node.decorator_list) - 1  # type: ignore[attr-defined]
    end = node.end_lineno  # type: ignore[attr-defined]
    kept = source_lines[start : doc_node.lineno - 1] + source_lines[doc_node.end_lineno : end]
    code = textwrap.dedent("".join(kept)).strip("\n")
    return code or None


def _examples_in_file(root: Path, path: Path) -> list[CodeExample]:
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    module = _module_name(root, path)
    found: list[CodeExample] = []

    def visit(parent: ast.AST, prefix: str) -> None:
        for node in ast.iter_child_nodes(parent):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_"):
                continue
            qualname = f"{prefix}{node.name}"
            doc = ast.get_docstring(node, clean=True)
            if doc:
                query = _first_sentence(doc)
                code = _strip_docstring(lines, node)
                if code and len(query.split()) >= 4 and len(query) <= 300:
                    found.append(CodeExample(module, qualname, query, code))
            if isinstance(node, ast.ClassDef):
                visit(node, f"{qualname}.")

    visit(tree, "")
    return found


@functools.lru_cache(maxsize=4)
def collect_examples(root: Path | None = None, max_code_chars: int = 4000) -> tuple[CodeExample, ...]:
    """All usable (docstring sentence, code) examples of the standard library, deduplicated.

    Private modules (``_pyio``) and private names are left out. A query text, a code text or an
    id (a name defined twice in one module) seen twice is kept once, first in sorted file order,
    so a query has exactly one relevant document.
    """
    root = root or stdlib_root()
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not (_SKIP_DIRS & set(p.relative_to(root).parts)) and not p.relative_to(root).parts[0].startswith("_")
    )
    seen: set[str] = set()
    examples: list[CodeExample] = []
    for path in files:
        for ex in _examples_in_file(root, path):
            if len(ex.code) > max_code_chars:
                continue
            keys = {"q:" + ex.query.lower(), "c:" + ex.code, "i:" + ex.doc_id}
            if keys & seen:
                continue
            seen |= keys
            examples.append(ex)
    return tuple(examples)


def module_split(module: str, test_fraction: float = 0.2) -> str:
    """``"test"`` or ``"train"`` for a top-level package, by a stable hash (same on every machine)."""
    top = module.split(".", 1)[0]
    h = int(hashlib.sha256(top.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def build_stdlib_dataset(
    out_dir: str | Path,
    *,
    max_docs: int | None = None,
    test_fraction: float = 0.2,
    root: Path | None = None,
) -> Path:
    """Write the dataset in BEIR format to ``out_dir`` (corpus, queries, qrels/train, qrels/test).

    ``max_docs`` keeps a deterministic subset (every n-th example) so that quick runs stay quick.
    Rebuilding an existing folder with the same settings and interpreter is a no-op.
    """
    out_dir = Path(out_dir)
    meta = {
        "source": "python-stdlib",
        "python": sys.version.split()[0],
        "max_docs": max_docs,
        "test_fraction": test_fraction,
    }
    meta_path = out_dir / "dataset.json"
    if meta_path.is_file():
        try:
            if {k: v for k, v in json.loads(meta_path.read_text()).items() if k in meta} == meta:
                return out_dir
        except json.JSONDecodeError:
            pass
    examples = list(collect_examples(root) if root else collect_examples())
    if max_docs is not None and len(examples) > max_docs:
        step = len(examples) / max_docs
        examples = [examples[int(i * step)] for i in range(max_docs)]
    corpus_lines, query_lines = [], []
    split_rows: dict[str, list[str]] = {"train": [], "test": []}
    for i, ex in enumerate(examples):
        qid = f"q{i}"
        corpus_lines.append(json.dumps({"_id": ex.doc_id, "title": "", "text": ex.code}))
        query_lines.append(json.dumps({"_id": qid, "text": ex.query, "metadata": {"module": ex.module}}))
        split_rows[module_split(ex.module, test_fraction)].append(f"{qid}\t{ex.doc_id}\t1")
    write_lines(out_dir / "corpus.jsonl", corpus_lines)
    write_lines(out_dir / "queries.jsonl", query_lines)
    for split, rows in split_rows.items():
        write_lines(out_dir / "qrels" / f"{split}.tsv", ["query-id\tcorpus-id\tscore", *rows])
    counts = {split: len(rows) for split, rows in split_rows.items()}
    write_json(meta_path, {**meta, "n_docs": len(examples), "n_queries": counts})
    log.info("built the stdlib code-search set in %s: %d documents, %s queries", out_dir, len(examples), counts)
    return out_dir


__all__ = ["CodeExample", "atomic_path", "build_stdlib_dataset", "collect_examples", "module_split"]
