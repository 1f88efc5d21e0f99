"""A corpus to index, from a BEIR folder, a JSONL file or a TSV file; and query files to search with.

Formats (each may be gzip-compressed, ``.gz``):

- a BEIR folder: its ``corpus.jsonl[.gz]``;
- JSONL (``.jsonl``): one object per line with ``_id`` and ``text`` (``title`` optional), as BEIR;
- TSV (``.tsv``): ``id <TAB> text`` per line (MS MARCO's ``collection.tsv``). A first line naming
  its columns is a header: ``id``/``_id``/``docid``/``doc_id``/``pid`` and ``text``/``passage``/
  ``contents``/``body``/``document``, and optionally ``title`` (so ``id title text`` works too).

Document text is ``(title + " " + text).strip()`` as everywhere else. Strict: malformed rows,
missing or empty ids, ids holding white space (they could not be written to ``doc_ids.txt`` or a
TREC run), duplicate ids and an empty corpus are one-line ``DataError``s naming file, line and
field. A blank document is refused too (an empty text has no meaningful embedding), unless
``skip_blank``: then it is left out and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.types import document_text, plural
from mbert_retrieval.data.beir import _get_id, _get_str, find_file, iter_jsonl, iter_lines

log = logging.getLogger(__name__)

ID_COLUMNS = ("id", "_id", "docid", "doc_id", "doc-id", "pid", "corpus-id", "qid", "query-id", "query_id")
TEXT_COLUMNS = ("text", "passage", "contents", "body", "document", "query")


@dataclass
class Corpus:
    """Documents to index: parallel ``ids`` and ``texts`` in file order."""

    ids: list[str]
    texts: list[str]
    source: str
    format: str  # "beir", "jsonl" or "tsv"
    warnings: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def corpus_format(path: str | Path) -> str:
    """``beir``, ``jsonl`` or ``tsv`` from the path; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        return "beir"
    if not path.exists():
        raise DataError(path, "corpus not found (expected a BEIR folder, a .jsonl or a .tsv file)")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    raise DataError(path, "unknown corpus format: expected a BEIR folder, a .jsonl[.gz] or a .tsv[.gz] file")


def _check_id(path: Path, lineno: int, doc_id: str) -> str:
    if any(c.isspace() for c in doc_id):
        raise DataError(
            path,
            f"id {doc_id!r} holds white space (it could not be written to doc_ids.txt or a TREC run)",
            line=lineno,
            field="_id",
        )
    return doc_id


def _iter_jsonl_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    for lineno, obj in iter_jsonl(path):
        doc_id = _check_id(path, lineno, _get_id(path, lineno, obj))
        text = document_text(_get_str(path, lineno, obj, "title"), _get_str(path, lineno, obj, "text"))
        yield lineno, doc_id, text


def _header(cols: list[str]) -> tuple[int, int, int | None] | None:
    """Column positions (id, text, title) if ``cols`` is a header line, else None."""
    names = [c.strip().lower() for c in cols]
    id_col = next((i for i, c in enumerate(names) if c in ID_COLUMNS), None)
    text_col = next((i for i, c in enumerate(names) if c in TEXT_COLUMNS), None)
    if id_col is None or text_col is None:
        return None
    title_col = names.index("title") if "title" in names else None
    return id_col, text_col, title_col


def iter_tsv(path: Path, what: str = "id, text") -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, id, text)`` from an ``id <TAB> text`` file (header line optional)."""
    columns: tuple[int, int, int | None] = (0, 1, None)
    width = 2
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if lineno == 1:
            header = _header(cols)
            if header is not None:
                columns, width = header, len(cols)
                continue
        if len(cols) != width:
            raise DataError(path, f"expected {width} tab-separated columns ({what}), got {len(cols)}", line=lineno)
        id_col, text_col, title_col = columns
        doc_id = cols[id_col].strip()
        if not doc_id:
            raise DataError(path, "is empty", line=lineno, field="id")
        _check_id(path, lineno, doc_id)
        title = cols[title_col] if title_col is not None else ""
        yield lineno, doc_id, document_text(title, cols[text_col])


def load_corpus_input(path: str | Path, *, skip_blank: bool = False) -> Corpus:
    """Read a corpus to index from a BEIR folder, a JSONL file or a TSV file (see the module doc)."""
    path = Path(path)
    fmt = corpus_format(path)
    file = find_file(path, "corpus.jsonl") if fmt == "beir" else path
    rows = _iter_jsonl_rows(file) if fmt in ("beir", "jsonl") else iter_tsv(file)
    ids: list[str] = []
    texts: list[str] = []
    first_line: dict[str, int] = {}
    warnings: Counter[str] = Counter()
    first_blank: tuple[int, str] | None = None
    for lineno, doc_id, text in rows:
        if doc_id in first_line:
            raise DataError(
                file, f"duplicate id {doc_id!r} (first on line {first_line[doc_id]})", line=lineno, field="_id"
            )
        first_line[doc_id] = lineno
        if not text:
            if not skip_blank:
                raise DataError(
                    file,
                    f"document {doc_id!r} has a blank text (and title); pass --skip-blank to leave such documents out",
                    line=lineno,
                    field="text",
                )
            warnings["blank documents (skipped)"] += 1
            first_blank = first_blank or (lineno, doc_id)
            continue
        ids.append(doc_id)
        texts.append(text)
    if not ids:
        reason = f" ({plural(warnings['blank documents (skipped)'], 'blank document')} skipped)" if warnings else ""
        raise DataError(file, f"the corpus holds no documents{reason}")
    if first_blank is not None:
        log.warning(
            "%s: skipped %s (the first on line %d, id %r)",
            file,
            plural(warnings["blank documents (skipped)"], "blank document"),
            *first_blank,
        )
    return Corpus(ids=ids, texts=texts, source=str(path), format=fmt, warnings=dict(warnings))


def load_queries_input(path: str | Path) -> dict[str, str]:
    """Queries to search with: BEIR-style JSONL (``_id``, ``text``) or TSV (``id <TAB> text``).

    Duplicate ids and blank queries are one-line errors; order is kept.
    """
    path = Path(path)
    if path.is_dir():
        path = find_file(path, "queries.jsonl")
    if not path.is_file():
        raise DataError(path, "queries file not found")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".tsv", ".tab")):
        rows = iter_tsv(path)
    else:
        rows = ((n, _check_id(path, n, _get_id(path, n, o)), _get_str(path, n, o, "text")) for n, o in iter_jsonl(path))
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, qid, text in rows:
        if qid in first_line:
            raise DataError(path, f"duplicate id {qid!r} (first on line {first_line[qid]})", line=lineno, field="_id")
        first_line[qid] = lineno
        if not text.strip():
            raise DataError(path, f"query {qid!r} is blank", line=lineno, field="text")
        queries[qid] = text
    if not queries:
        raise DataError(path, "holds no queries")
    return queries
