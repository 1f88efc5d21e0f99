"""Training rows for recipes, as Hugging Face ``datasets.Dataset`` with fixed columns.

- pairs / triples: ``query``, ``positive``, ``negative_1`` ... (in-batch negatives come on top);
- distillation: ``query``, ``document_1`` ... ``document_N`` and ``scores`` (the N teacher scores, a list),
  ``N = n_ways``: the (query, document_1, ..., document_N) + label layout of the sentence-transformers
  distillation losses, dense and multi-vector.

Local sources (tested): a BEIR folder's qrels split turned into (query, positive) pairs; TSV or
JSONL triples; JSONL distillation rows; MLDR train rows (JSONL shaped as the hub's). Hub sources
(the paper's data, need network): the sentence-transformers MS MARCO hard-negative triplets,
``lightonai/ms-marco-en-bge`` whose ids are resolved to text on the fly from the Arrow tables (no
Python list of 8.8M passages), and ``Shitao/MLDR`` train.

The one module that imports ``datasets``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.types import plural
from mbert_retrieval.data.beir import load_beir_folder

log = logging.getLogger(__name__)


def _dataset(columns: dict[str, list[Any]]):
    from datasets import Dataset

    return Dataset.from_dict(columns)


def beir_pairs(folder: str | Path, split: str = "train", max_rows: int | None = None):
    """(query, positive) for every judgement >= 1 of a BEIR split, in qrels order."""
    ds = load_beir_folder(folder, split)
    text = dict(zip(ds.corpus_ids, ds.corpus_texts, strict=True))
    queries, positives = [], []
    for qid, judged in ds.qrels.items():
        for did, rel in judged.items():
            if rel >= 1 and did in text:
                queries.append(ds.queries[qid])
                positives.append(text[did])
    if not queries:
        raise DataError(Path(folder) / "qrels" / f"{split}.tsv", "no positive judgements to train on")
    if max_rows:
        queries, positives = queries[:max_rows], positives[:max_rows]
    return _dataset({"query": queries, "positive": positives})


def _rows(path: Path):
    """Yield (line, fields) from TSV (tab-separated columns) or JSONL (objects)."""
    if not path.is_file():
        raise DataError(path, "file not found")
    jsonl = path.suffix in (".jsonl", ".json")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if jsonl:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(path, f"malformed JSON: {e.msg}", line=lineno) from None
                if not isinstance(obj, dict):
                    raise DataError(path, "expected a JSON object", line=lineno)
                yield lineno, obj
            else:
                yield lineno, line.rstrip("\r\n").split("\t")


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(query, positive) pairs from TSV (``query \\t positive``; further columns are ignored) or JSONL
    (``{"query", "positive"}``), in file order, for hard-negative mining. Plain lists, no ``datasets``."""
    path = Path(path)
    pairs: list[tuple[str, str]] = []
    for lineno, row in _rows(path):
        if isinstance(row, dict):
            for key in ("query", "positive"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataError(path, "missing or empty", line=lineno, field=key)
            pairs.append((row["query"], row["positive"]))
        else:
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError(path, "expected query <TAB> positive, both non-empty", line=lineno)
            pairs.append((row[0], row[1]))
    if not pairs:
        raise DataError(path, "no (query, positive) pairs")
    return pairs


def triples(path: str | Path, max_rows: int | None = None):
    """``query \\t positive [\\t negative ...]`` TSV, or JSONL ``{"query", "positive", "negatives": [...]}``
    (``"negative"`` for one). Every row must have the same number of negatives."""
    path = Path(path)
    columns: dict[str, list[str]] = {}
    width = None
    for lineno, row in _rows(path):
        if isinstance(row, dict):
            for key in ("query", "positive"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataError(path, "missing or empty", line=lineno, field=key)
            negs = row.get("negatives", [row["negative"]] if "negative" in row else [])
            if not isinstance(negs, list) or not all(isinstance(n, str) for n in negs):
                raise DataError(path, "must be a list of strings", line=lineno, field="negatives")
            fields = [row["query"], row["positive"], *negs]
        else:
            fields = row
            if len(fields) < 2 or any(not f.strip() for f in fields):
                raise DataError(
                    path, "expected query, positive[, negatives...] as non-empty tab-separated columns", line=lineno
                )
        if width is None:
            width = len(fields)
            names = ["query", "positive"] + [f"negative_{i}" for i in range(1, width - 1)]
            columns = {n: [] for n in names}
        elif len(fields) != width:
            raise DataError(
                path, f"{plural(len(fields) - 2, 'negative')} where the first row has {width - 2}", line=lineno
            )
        for name, value in zip(columns, fields, strict=True):
            columns[name].append(value)
        if max_rows and len(columns["query"]) >= max_rows:
            break
    if not columns:
        raise DataError(path, "no training rows")
    return _dataset(columns)


def distillation(path: str | Path, n_ways: int = 32, max_rows: int | None = None):
    """JSONL ``{"query": str, "documents": [str, ...], "scores": [float, ...]}``; the first ``n_ways``
    documents of each row are kept (rows with fewer are refused)."""
    path = Path(path)
    queries, documents, scores = [], [], []
    for lineno, row in _rows(path):
        if not isinstance(row, dict):
            raise DataError(path, "distillation rows are JSONL objects", line=lineno)
        docs, sc = row.get("documents"), row.get("scores")
        if not isinstance(row.get("query"), str):
            raise DataError(path, "missing or not a string", line=lineno, field="query")
        if not isinstance(docs, list) or not isinstance(sc, list) or len(docs) != len(sc):
            raise DataError(path, "documents and scores must be lists of equal length", line=lineno, field="scores")
        if len(docs) < n_ways:
            raise DataError(
                path, f"{plural(len(docs), 'document')}, fewer than n_ways={n_ways}", line=lineno, field="documents"
            )
        try:
            values = [float(x) for x in sc[:n_ways]]
        except (TypeError, ValueError):
            raise DataError(path, "teacher scores must be numbers", line=lineno, field="scores") from None
        queries.append(row["query"])
        documents.append([str(d) for d in docs[:n_ways]])
        scores.append(values)
        if max_rows and len(queries) >= max_rows:
            break
    if not queries:
        raise DataError(path, "no training rows")
    return _dataset({"query": queries, **_document_columns(documents), "scores": scores})


def _document_columns(documents: list[list[str]]) -> dict[str, list[str]]:
    """Per-row document lists (all of one length) as columns ``document_1`` ... ``document_N``."""
    n = len(documents[0]) if documents else 0
    return {f"document_{i + 1}": [docs[i] for docs in documents] for i in range(n)}


def hub_triplets(hub_id: str, subset: str | None = None, max_rows: int | None = None):
    """A hub dataset of (query, positive, negative...) columns, e.g.
    ``sentence-transformers/msmarco-co-condenser-margin-mse-sym-mnrl-mean-v1`` subset ``triplet-hard``."""
    from datasets import load_dataset

    split = f"train[:{max_rows}]" if max_rows else "train"
    return load_dataset(hub_id, subset, split=split)


MLDR_TRAIN_FILE = "hf://datasets/{hub_id}/mldr-v1.0-{language}/train.jsonl.gz"


def mldr(
    path: str | Path | None = None,
    *,
    hub_id: str = "Shitao/MLDR",
    language: str = "en",
    num_negatives: int = 1,
    max_rows: int | None = None,
):
    """MLDR train rows (``query_id``, ``query``, ``positive_passages`` and ``negative_passages``, lists
    of ``{docid, text}``) as ``query``, ``positive``, ``negative_1..N``: the first positive and the
    first ``num_negatives`` negatives of each row (rows with fewer are left out and counted).

    ``path``: a local JSONL (or .jsonl.gz) file of such rows; else the hub file
    ``mldr-v1.0-<language>/train.jsonl.gz`` of ``hub_id`` (read as plain JSON: the hub repository's
    loading script is not run). Long documents stay as they are: truncation is the model's
    ``max_seq_length``."""
    from datasets import load_dataset

    source = Path(path) if path is not None else None
    if source is not None and not source.is_file():
        raise DataError(source, "file not found")
    files = str(source) if source is not None else MLDR_TRAIN_FILE.format(hub_id=hub_id, language=language)
    raw = load_dataset("json", data_files=files, split="train")
    where = source or Path(files)
    for column in ("query", "positive_passages", "negative_passages"):
        if column not in raw.column_names:
            raise DataError(where, f"not MLDR train rows: no {column!r} (columns: {', '.join(raw.column_names)})")
    if max_rows:
        raw = raw.select(range(min(max_rows, len(raw))))
    columns: dict[str, list[str]] = {"query": [], "positive": []}
    columns.update({f"negative_{i}": [] for i in range(1, num_negatives + 1)})
    short = 0
    for i, row in enumerate(raw):
        positives, negatives = row["positive_passages"] or [], row["negative_passages"] or []
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise DataError(where, "missing or empty", line=i + 1, field="query")
        if not positives or not isinstance(positives[0], dict) or not str(positives[0].get("text") or "").strip():
            raise DataError(where, "no positive passage with text", line=i + 1, field="positive_passages")
        texts = [n.get("text") for n in negatives if isinstance(n, dict) and str(n.get("text") or "").strip()]
        if len(texts) < num_negatives:
            short += 1
            continue
        columns["query"].append(row["query"])
        columns["positive"].append(positives[0]["text"])
        for j, text in enumerate(texts[:num_negatives], start=1):
            columns[f"negative_{j}"].append(text)
    if short:
        log.warning(
            "%s: %s with fewer than %s left out", where, plural(short, "row"), plural(num_negatives, "negative")
        )
    if not columns["query"]:
        raise DataError(where, f"no row has {plural(num_negatives, 'negative passage')}")
    return _dataset(columns)


def hub_distillation(hub_id: str = "lightonai/ms-marco-en-bge", n_ways: int = 32, max_rows: int | None = None):
    """``lightonai/ms-marco-en-bge``: configs ``train`` (query_id, document_ids, scores), ``queries``
    (query_id, text), ``documents`` (document_id, text). Ids become texts in a transform, per batch,
    by row lookups into the Arrow tables: no Python list of all passages is built."""
    from datasets import load_dataset

    split = f"train[:{max_rows}]" if max_rows else "train"
    train = load_dataset(hub_id, "train", split=split)
    queries = load_dataset(hub_id, "queries", split="train")
    documents = load_dataset(hub_id, "documents", split="train")
    return resolve_ids(train, queries, documents, n_ways)


def resolve_ids(train, queries, documents, n_ways: int):
    """Attach an on-the-fly transform turning ``query_id`` / ``document_ids`` into texts."""
    q_row = {qid: i for i, qid in enumerate(queries["query_id"])}  # ~0.8M small ints/strs
    d_row = {did: i for i, did in enumerate(documents["document_id"])}  # ids only, no texts

    def to_text(batch: dict[str, list]) -> dict[str, list]:
        q_text = queries.select([q_row[q] for q in batch["query_id"]])["text"]
        docs, scores = [], []
        for ids, sc in zip(batch["document_ids"], batch["scores"], strict=True):
            docs.append(documents.select([d_row[d] for d in ids[:n_ways]])["text"])
            scores.append([float(x) for x in sc[:n_ways]])
        return {"query": q_text, **_document_columns(docs), "scores": scores}

    train.set_transform(to_text)
    return train
