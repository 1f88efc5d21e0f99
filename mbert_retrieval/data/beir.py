"""BEIR-format folders: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``.

Strict where BEIR would crash or silently corrupt a result (malformed JSON, missing ``_id``,
duplicate ids, non-integer relevance), tolerant with a counted warning where BEIR and MTEB
tolerate the input (qrels naming an unknown document are kept, as BEIR keeps them; qrels naming
an unknown query are dropped; empty documents are kept).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.types import Qrels, RetrievalDataset, document_text

log = logging.getLogger(__name__)


def find_file(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``; a clear error when neither exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(folder, f"no {stem} or {stem}.gz in this folder (is it a BEIR dataset folder?)")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (newline stripped) for each non-blank line of a text file,
    gzipped or not; one-line errors for a missing or unreadable file and for non-UTF-8 bytes."""
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise DataError(path, f"not valid UTF-8 (byte {e.start})", line=lineno) from None
                if line.strip():
                    yield lineno, line
    except (OSError, EOFError) as e:  # gzip errors are OSError / EOFError
        if isinstance(e, FileNotFoundError):
            raise DataError(path, "file not found") from None
        raise DataError(path, f"cannot read: {e}") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; one-line errors on bad input."""
    for lineno, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})", line=lineno) from None
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        yield lineno, obj


def _get_id(path: Path, lineno: int, obj: dict[str, Any]) -> str:
    if "_id" not in obj:
        raise DataError(path, "missing", line=lineno, field="_id")
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(path, f"must be a string or an integer, got {type(value).__name__}", line=lineno, field="_id")
    value = str(value)
    if not value.strip():
        raise DataError(path, "is empty", line=lineno, field="_id")
    return value


def _get_str(path: Path, lineno: int, obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(path, f"must be a string, got {type(value).__name__}", line=lineno, field=key)
    return value


def load_corpus(path: Path, warnings: Counter[str] | None = None) -> tuple[list[str], list[str]]:
    """Read a corpus file into parallel lists of ids and texts ``(title + " " + text).strip()``."""
    ids: list[str] = []
    texts: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        doc_id = _get_id(path, lineno, obj)
        if doc_id in first_line:
            raise DataError(
                path, f"duplicate id {doc_id!r} (first on line {first_line[doc_id]})", line=lineno, field="_id"
            )
        first_line[doc_id] = lineno
        text = document_text(_get_str(path, lineno, obj, "title"), _get_str(path, lineno, obj, "text"))
        if not text and warnings is not None:
            warnings["empty documents (kept)"] += 1
        ids.append(doc_id)
        texts.append(text)
    if not ids:
        raise DataError(path, "the corpus holds no documents")
    return ids, texts


def load_queries(path: Path, warnings: Counter[str] | None = None) -> dict[str, str]:
    """Read a queries file into ``{query_id: text}``."""
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        qid = _get_id(path, lineno, obj)
        if qid in first_line:
            raise DataError(path, f"duplicate id {qid!r} (first on line {first_line[qid]})", line=lineno, field="_id")
        first_line[qid] = lineno
        text = _get_str(path, lineno, obj, "text")
        if not text.strip() and warnings is not None:
            warnings["empty queries (kept)"] += 1
        queries[qid] = text
    return queries


def load_qrels(path: Path, warnings: Counter[str] | None = None) -> Qrels:
    """Read a BEIR qrels TSV (``query-id  corpus-id  score``; header line optional)."""
    warnings = warnings if warnings is not None else Counter()
    qrels: Qrels = {}
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if len(cols) != 3:
            raise DataError(
                path, f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}", line=lineno
            )
        qid, did, score = (c.strip() for c in cols)
        if lineno == 1 and not _is_int(score):
            continue  # header line, e.g. "query-id corpus-id score"
        if not _is_int(score):
            raise DataError(path, f"relevance must be an integer, got {score!r}", line=lineno, field="score")
        if not qid or not did:
            raise DataError(path, "empty query or corpus id", line=lineno)
        if lineno == 1:
            warnings["qrels without a header line (first line read as data)"] += 1
        per_query = qrels.setdefault(qid, {})
        if did in per_query:
            warnings["duplicate qrels lines (last one kept)"] += 1
        per_query[did] = int(score)
    return qrels


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def load_beir_folder(folder: str | Path, split: str = "test", name: str | None = None) -> RetrievalDataset:
    """Load a local BEIR-format dataset folder for one split.

    Only queries with judgements in ``qrels/<split>.tsv`` are kept, as BEIR does.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "dataset folder not found")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise DataError(qrels_path, f"no qrels for split {split!r}; available splits: {available or 'none'}")
    warnings: Counter[str] = Counter()
    corpus_ids, corpus_texts = load_corpus(find_file(folder, "corpus.jsonl"), warnings)
    all_queries = load_queries(find_file(folder, "queries.jsonl"), warnings)
    qrels = load_qrels(qrels_path, warnings)

    known_docs = set(corpus_ids)
    for qid in list(qrels):
        if qid not in all_queries:
            warnings["qrels for unknown queries (dropped)"] += len(qrels.pop(qid))
            continue
        unknown = sum(1 for did in qrels[qid] if did not in known_docs)
        if unknown:
            warnings["qrels for unknown documents (kept, never retrieved)"] += unknown
    if not qrels:
        raise DataError(qrels_path, "no judgements left for any known query")
    queries = {qid: all_queries[qid] for qid in qrels}
    for what, count in sorted(warnings.items()):
        log.warning("%s: %d %s", folder, count, what)
    return RetrievalDataset(
        name=name or folder.name,
        split=split,
        corpus_ids=corpus_ids,
        corpus_texts=corpus_texts,
        queries=queries,
        qrels=qrels,
        source=str(folder),
        warnings=dict(warnings),
    )
