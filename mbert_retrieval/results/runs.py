"""TREC run files: ``qid Q0 docid rank score tag``, one line per retrieved document.

Scores are written with ``repr(float)`` (shortest text that reads back as the same double), so a
run re-scored from its file by pytrec_eval or trec_eval gives exactly the metrics computed in
memory, ties included.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.io import write_lines
from mbert_retrieval.core.types import Run
from mbert_retrieval.results.metrics import rank


def format_run(run: Run, tag: str) -> Iterator[str]:
    tag = "_".join(tag.split()) or "run"
    for qid in run:
        for i, doc in enumerate(rank(run[qid]), start=1):
            yield f"{qid} Q0 {doc} {i} {float(run[qid][doc])!r} {tag}"


def write_run(path: str | Path, run: Run, tag: str = "mbert-retrieval") -> None:
    """Write ``run`` as a 6-column TREC run file, atomically, in trec_eval rank order."""
    for qid in run:
        if any(c.isspace() for c in qid) or any(any(c.isspace() for c in d) for d in run[qid]):
            raise ValueError(f"query or document ids with white space cannot be written to a TREC run (query {qid!r})")
    write_lines(path, format_run(run, tag))


def read_run(path: str | Path) -> Run:
    """Read a 6-column TREC run file (``qid Q0 docid rank score tag``, white-space separated).

    One-line ``DataError`` naming the line and field for: a wrong column count, a rank that is not
    an integer, a score that is not a finite number, a document listed twice for one query,
    non-UTF-8 bytes, and a file with no result lines.
    """
    path = Path(path)
    run: Run = {}
    if not path.is_file():
        raise DataError(path, "file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 (byte {e.start})", line=lineno) from None
            if not line.strip():
                continue
            cols = line.split()
            if len(cols) != 6:
                raise DataError(path, f"expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}", line=lineno)
            qid, _, doc, rank_text, score, _ = cols
            try:
                int(rank_text)
            except ValueError:
                raise DataError(path, f"not an integer: {rank_text!r}", line=lineno, field="rank") from None
            try:
                value = float(score)
            except ValueError:
                raise DataError(path, f"not a number: {score!r}", line=lineno, field="score") from None
            if not math.isfinite(value):
                raise DataError(path, f"not a finite number: {score!r}", line=lineno, field="score")
            per_query = run.setdefault(qid, {})
            if doc in per_query:
                raise DataError(path, f"document {doc!r} listed twice for query {qid!r}", line=lineno, field="docid")
            per_query[doc] = value
    if not run:
        raise DataError(path, "holds no results (an empty run file)")
    return run
