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

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.io import atomic_path, write_json, write_lines

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
_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\(")  # "D.keys() -> a set-like object ...": a call signature


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
def collect_examples(
    root: Path | None = None, max_code_chars: int = 4000, progress: bool = False
) -> tuple[CodeExample, ...]:
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
    if progress:
        from tqdm.auto import tqdm

        files = tqdm(files, desc="parse the standard library", unit="file")
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


def _subset(examples: list[CodeExample], max_docs: int | None) -> list[CodeExample]:
    """Every n-th example, so that ``max_docs`` of them remain (deterministic)."""
    if max_docs is not None and len(examples) > max_docs:
        step = len(examples) / max_docs
        examples = [examples[int(i * step)] for i in range(max_docs)]
    return examples


def _same_meta(meta_path: Path, meta: dict) -> dict | None:
    """The recorded meta of a finished build when its settings equal ``meta``, else None."""
    if not meta_path.is_file():
        return None
    try:
        recorded = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    if isinstance(recorded, dict) and {k: v for k, v in recorded.items() if k in meta} == meta:
        return recorded
    return None


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
    if _same_meta(meta_path, meta) is not None:
        return out_dir
    examples = _subset(list(collect_examples(root) if root else collect_examples()), max_docs)
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


@dataclass(frozen=True)
class StdlibSplits:
    """Where :func:`build_stdlib_splits` wrote the two BEIR folders, and what is in them."""

    folder: Path
    counts: dict[str, dict[str, int]]  # split -> {"queries", "documents", "modules"}
    reused: bool = False

    @property
    def train(self) -> Path:
        return self.folder / "train"

    @property
    def test(self) -> Path:
        return self.folder / "test"

    def summary(self) -> str:
        parts = [
            f"{split} {c['queries']:,} queries / {c['documents']:,} documents from {c['modules']} packages"
            for split, c in self.counts.items()
        ]
        return f"python-stdlib (Python {sys.version.split()[0]}): " + "; ".join(parts)


def build_stdlib_splits(
    out_dir: str | Path,
    *,
    max_docs: int | None = None,
    test_fraction: float = 0.2,
    root: Path | None = None,
    progress: bool = False,
) -> StdlibSplits:
    """Write the set as two separate BEIR folders, ``out_dir/train`` and ``out_dir/test``.

    Unlike :func:`build_stdlib_dataset` (one corpus, two qrels files), each split has its own
    corpus: the test documents come only from test packages, so neither the tokenizer nor the
    model trained on ``train`` has seen a test query or document. Queries that are a call
    signature rather than a sentence (``D.keys() -> a set-like object``; 78 of 4,167 on
    Python 3.11) are left out. Each folder holds
    ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``; ``out_dir/dataset.json`` is
    written last, and rebuilding with the same settings and interpreter reuses the folders.
    """
    out_dir = Path(out_dir)
    meta = {
        "source": "python-stdlib",
        "layout": "split-corpora",
        "queries": "sentences",
        "python": sys.version.split()[0],
        "max_docs": max_docs,
        "test_fraction": test_fraction,
    }
    meta_path = out_dir / "dataset.json"
    recorded = _same_meta(meta_path, meta)
    if recorded is not None and all((out_dir / s / "qrels" / f"{s}.tsv").is_file() for s in ("train", "test")):
        return StdlibSplits(out_dir, recorded["counts"], reused=True)
    found = collect_examples(root or stdlib_root(), progress=progress)
    examples = [e for e in found if not _SIGNATURE.match(e.query)]
    examples = _subset(examples, max_docs)
    by_split: dict[str, list[CodeExample]] = {"train": [], "test": []}
    for ex in examples:
        by_split[module_split(ex.module, test_fraction)].append(ex)
    counts: dict[str, dict[str, int]] = {}
    for split, rows in by_split.items():
        if not rows:
            raise DataError(out_dir, f"the {split} split is empty: raise max_docs or change test_fraction")
        folder = out_dir / split
        write_lines(folder / "corpus.jsonl", (json.dumps({"_id": e.doc_id, "title": "", "text": e.code}) for e in rows))
        write_lines(
            folder / "queries.jsonl",
            (
                json.dumps({"_id": f"{split}-q{i}", "text": e.query, "metadata": {"module": e.module}})
                for i, e in enumerate(rows)
            ),
        )
        write_lines(
            folder / "qrels" / f"{split}.tsv",
            ["query-id\tcorpus-id\tscore", *(f"{split}-q{i}\t{e.doc_id}\t1" for i, e in enumerate(rows))],
        )
        counts[split] = {
            "queries": len(rows),
            "documents": len(rows),
            "modules": len({e.module.split(".", 1)[0] for e in rows}),
        }
    write_json(meta_path, {**meta, "counts": counts})
    return StdlibSplits(out_dir, counts)


__all__ = [
    "CodeExample",
    "StdlibSplits",
    "atomic_path",
    "build_stdlib_dataset",
    "build_stdlib_splits",
    "collect_examples",
    "module_split",
]
