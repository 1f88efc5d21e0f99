"""Hard-negative mining: (query, positive) pairs in, (query, positive, negatives...) triples out.

The corpus is encoded with a single-vector model and put in a FAISS index (any ``indices/faiss-*``
spec); each query's nearest documents become negative candidates. False negatives are kept out by:

- excluding every judged positive of the query (BEIR: all qrels >= 1 of the split; a pairs file:
  every positive listed for the same query text) and any document whose text equals one of them;
- a rank window ``[range_min, range_max)`` over the retrieved list *with the positives removed*
  (``range_min=0`` is the hardest non-positive; skipping a few top hits avoids unjudged positives);
- margins against the row's own positive score, as sentence-transformers' ``mine_hard_negatives``:
  ``absolute_margin`` drops a candidate with ``score + margin > positive score``,
  ``relative_margin`` one with ``score > positive score * (1 - margin)``; ``max_score`` caps scores.

Then ``num_negatives`` are taken per (query, positive) row, the best-scoring ones (``top``) or a
seeded random choice (``random``). Rows with fewer eligible candidates are dropped (counted), so
every row has the same width, as the triples loader requires. Output: JSONL
``{"query", "positive", "negatives": [...]}`` or TSV ``query<TAB>positive<TAB>negative...`` (tabs and
newlines inside texts become spaces), written atomically, with ``OUT.summary.json`` beside it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import write_json, write_lines
from mbert_retrieval.core.types import plural

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningOptions:
    """Which retrieved documents may become negatives (see the module doc)."""

    num_negatives: int = 3
    range_min: int = 0
    range_max: int = 50
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    sampling: Literal["top", "random"] = "top"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ConfigError(f"num_negatives must be at least 1, got {self.num_negatives}")
        if self.range_min < 0 or self.range_max <= self.range_min:
            raise ConfigError(f"rank window [{self.range_min}, {self.range_max}) is empty or negative")
        if self.range_max - self.range_min < self.num_negatives:
            raise ConfigError(
                f"rank window [{self.range_min}, {self.range_max}) holds fewer than num_negatives={self.num_negatives}"
            )
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise ConfigError(f"relative_margin must be in [0, 1), got {self.relative_margin}")
        if self.sampling not in ("top", "random"):
            raise ConfigError(f"sampling must be 'top' or 'random', got {self.sampling!r}")


@dataclass
class MiningInput:
    """Documents, queries, and the (query, positive) rows to extend. Indices into the lists."""

    doc_ids: list[str]
    doc_texts: list[str]
    queries: list[str]
    positives: list[set[int]]  # per query: every document that must not be a negative
    rows: list[tuple[int, int]]  # (query index, positive document index), output order
    source: str
    notes: dict[str, int] = field(default_factory=dict)


def input_from_beir(folder: str | Path, split: str = "train") -> MiningInput:
    """A BEIR folder: the corpus, and one row per judgement >= 1 of ``split``."""
    from mbert_retrieval.data.beir import load_beir_folder

    ds = load_beir_folder(folder, split)
    position = {d: i for i, d in enumerate(ds.corpus_ids)}
    queries: list[str] = []
    positives: list[set[int]] = []
    rows: list[tuple[int, int]] = []
    for qid, judged in ds.qrels.items():
        pos = {position[d] for d, rel in judged.items() if rel >= 1 and d in position}
        if not pos or qid not in ds.queries:
            continue
        q = len(queries)
        queries.append(ds.queries[qid])
        positives.append(pos)
        rows += [(q, position[d]) for d, rel in judged.items() if rel >= 1 and d in position]
    if not rows:
        raise DataError(Path(folder) / "qrels" / f"{split}.tsv", "no positive judgements to mine negatives for")
    return MiningInput(list(ds.corpus_ids), list(ds.corpus_texts), queries, positives, rows, f"beir:{folder}:{split}")


def input_from_pairs(path: str | Path, corpus: str | Path | None = None) -> MiningInput:
    """A pairs file (TSV/JSONL query, positive). The candidates are the distinct positives, plus the
    documents of ``corpus`` (BEIR folder, .jsonl or .tsv) when given. Rows sharing a query text
    share their positives (none of them becomes a negative of that query)."""
    from mbert_retrieval.data.training import read_pairs

    pairs = read_pairs(path)
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    by_text: dict[str, int] = {}

    def doc(text: str, doc_id: str) -> int:
        if text not in by_text:
            by_text[text] = len(doc_texts)
            doc_ids.append(doc_id)
            doc_texts.append(text)
        return by_text[text]

    query_pos: dict[str, int] = {}
    queries: list[str] = []
    positives: list[set[int]] = []
    rows: list[tuple[int, int]] = []
    for query, positive in pairs:
        d = doc(positive, f"positive-{len(doc_texts)}")
        if query not in query_pos:
            query_pos[query] = len(queries)
            queries.append(query)
            positives.append(set())
        q = query_pos[query]
        positives[q].add(d)
        rows.append((q, d))
    notes = {"pairs": len(pairs), "distinct positives": len(doc_texts)}
    if corpus is not None:
        from mbert_retrieval.data.corpus import load_corpus_input

        extra = load_corpus_input(corpus, skip_blank=True)
        before = len(doc_texts)
        for doc_id, text in zip(extra.ids, extra.texts, strict=True):
            doc(text, doc_id)
        notes["corpus documents added"] = len(doc_texts) - before
    return MiningInput(doc_ids, doc_texts, queries, positives, rows, f"pairs:{path}", notes)


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(a.mean()), 4),
        "min": round(float(a.min()), 4),
        "median": round(float(np.median(a)), 4),
        "max": round(float(a.max()), 4),
    }


def select_negatives(
    data: MiningInput,
    ranked: list[list[tuple[int, float]]],
    positive_scores: Sequence[float],
    options: MiningOptions,
) -> tuple[list[list[tuple[int, float]] | None], dict[str, int]]:
    """Per row: the chosen ``(document index, score)`` negatives, or None when too few qualify.

    ``ranked[q]`` is query ``q``'s retrieved list, best first; ``positive_scores[r]`` the score of
    row ``r``'s positive. Returns the choices and counts of candidates skipped per reason."""
    rng = random.Random(options.seed)
    skipped = {"judged positive or same text": 0, "outside rank window": 0, "margin": 0, "max_score": 0}
    pos_texts = [{data.doc_texts[d] for d in pos} for pos in data.positives]
    windows: list[list[tuple[int, float]]] = []
    for q, hits in enumerate(ranked):
        rank, window = 0, []
        for d, score in hits:
            if d in data.positives[q] or data.doc_texts[d] in pos_texts[q]:
                skipped["judged positive or same text"] += 1
                continue
            if options.range_min <= rank < options.range_max:
                window.append((d, score))
            else:
                skipped["outside rank window"] += 1
            rank += 1
        windows.append(window)
    chosen: list[list[tuple[int, float]] | None] = []
    for r, (q, _) in enumerate(data.rows):
        ok = []
        for d, score in windows[q]:
            pos = positive_scores[r]
            if (options.absolute_margin is not None and score + options.absolute_margin > pos) or (
                options.relative_margin is not None and score > pos * (1 - options.relative_margin)
            ):
                skipped["margin"] += 1
                continue
            if options.max_score is not None and score > options.max_score:
                skipped["max_score"] += 1
                continue
            ok.append((d, score))
        if len(ok) < options.num_negatives:
            chosen.append(None)
        elif options.sampling == "top":
            chosen.append(ok[: options.num_negatives])
        else:
            chosen.append(sorted(rng.sample(ok, options.num_negatives), key=lambda x: -x[1]))
    return chosen, skipped


def _check_request(out: Path, model: str, index_spec: str) -> Any:
    """The checks before any encoding: the triples file's format, a FAISS spec, a dense model; the spec file."""
    from mbert_retrieval.catalog import load_index_spec
    from mbert_retrieval.encoders import detect_kind

    if out.suffix not in (".jsonl", ".tsv"):
        raise ConfigError(f"{out}: the triples file must end in .jsonl or .tsv")
    spec = load_index_spec(index_spec)
    if spec.index.kind != "faiss":
        raise ConfigError(f"index spec {index_spec!r} is {spec.index.kind}; mining needs a faiss-* spec")
    if detect_kind(model) == "colbert":
        raise ConfigError(f"{model} is a ColBERT model; mining needs a single-vector (dense) model")
    return spec


def _rank_candidates(
    encoder: Any, index_spec: Any, data: MiningInput, options: MiningOptions
) -> tuple[list[list[tuple[int, float]]], list[float], int]:
    """Every query's top ``k`` documents as ``(row, score)`` (``k``: ``range_max`` plus room for its
    positives), the score of each ``(query, positive)`` row, and ``k``."""
    from mbert_retrieval.indexes import make_index

    docs = np.asarray(encoder.encode_documents(data.doc_texts, desc="encode documents"), dtype=np.float32)
    qvecs = np.asarray(encoder.encode_queries(data.queries, desc="encode queries"), dtype=np.float32)
    index = make_index(index_spec, docs.shape[1])
    keys = [str(i) for i in range(len(data.doc_texts))]
    index.add(keys, docs)
    most_positives = max(len(p) for p in data.positives)
    k = min(len(keys), options.range_max + most_positives)
    run = index.search([str(i) for i in range(len(data.queries))], qvecs, k)
    ranked = [[(int(d), float(s)) for d, s in run[str(q)].items()] for q in range(len(data.queries))]
    positive_scores = [float(qvecs[q] @ docs[d]) for q, d in data.rows]
    return ranked, positive_scores, k


def _triple_lines(
    data: MiningInput, chosen: list[list[tuple[int, float]] | None], positive_scores: list[float], *, tsv: bool
) -> tuple[list[str], list[float], list[float]]:
    """The output lines (TSV or JSONL) of the rows that kept their negatives, and the scores written."""
    lines: list[str] = []
    written_pos: list[float] = []
    written_neg: list[float] = []
    for (q, d), negs, pos_score in zip(data.rows, chosen, positive_scores, strict=True):
        if negs is None:
            continue
        query, positive = data.queries[q], data.doc_texts[d]
        texts = [data.doc_texts[n] for n, _ in negs]
        if tsv:
            lines.append("\t".join(_clean(t) for t in (query, positive, *texts)))
        else:
            lines.append(json.dumps({"query": query, "positive": positive, "negatives": texts}, ensure_ascii=False))
        written_pos.append(pos_score)
        written_neg += [s for _, s in negs]
    return lines, written_pos, written_neg


def mine(
    data: MiningInput,
    model: str,
    out: str | Path,
    *,
    options: MiningOptions | None = None,
    index_spec: str = "faiss-flat",
    batch_size: int = 32,
    max_seq_length: int | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Mine negatives for ``data`` with ``model`` and write the triples to ``out`` (``.jsonl`` or
    ``.tsv``) and a summary to ``OUT.summary.json``; returns the summary."""
    from mbert_retrieval.encoders import load_encoder

    options = options or MiningOptions()
    out = Path(out)
    spec = _check_request(out, model, index_spec)
    start = time.perf_counter()
    encoder = load_encoder(
        model,
        "dense",
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        query_prompt=query_prompt,
        document_prompt=document_prompt,
        device=device,
        show_progress=progress,
    )
    ranked, positive_scores, k = _rank_candidates(encoder, spec.index, data, options)
    chosen, skipped = select_negatives(data, ranked, positive_scores, options)
    lines, written_pos, written_neg = _triple_lines(data, chosen, positive_scores, tsv=out.suffix == ".tsv")
    if not lines:
        raise ConfigError(
            f"no row has {options.num_negatives} eligible negatives: widen --range-max, loosen the margins "
            "or ask for fewer negatives"
        )
    write_lines(out, lines)
    summary: dict[str, Any] = {
        "out": str(out),
        "source": data.source,
        "model": model,
        "index": spec.name,
        "options": asdict(options),
        "documents": len(data.doc_texts),
        "queries": len(data.queries),
        "rows_in": len(data.rows),
        "rows_written": len(lines),
        "rows_dropped_too_few_negatives": len(data.rows) - len(lines),
        "candidates_retrieved_per_query": k,
        "candidates_skipped": skipped,
        "positive_scores": _stats(written_pos),
        "negative_scores": _stats(written_neg),
        "input_notes": data.notes,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(Path(f"{out}.summary.json"), summary)
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """A short human-readable account of a mining run."""
    o = summary["options"]
    lines = [
        f"# Mined negatives: {summary['out']}",
        "",
        f"- source: {summary['source']}; model: {summary['model']}; index: {summary['index']}",
        f"- {summary['rows_written']:,} of {plural(summary['rows_in'], 'row')} written with "
        f"{plural(o['num_negatives'], 'negative')} "
        f"({summary['rows_dropped_too_few_negatives']:,} dropped: too few eligible candidates)",
        f"- rank window [{o['range_min']}, {o['range_max']}), absolute margin {o['absolute_margin']}, "
        f"relative margin {o['relative_margin']}, max score {o['max_score']}, sampling {o['sampling']}",
        "- skipped candidates: " + ", ".join(f"{k} {v:,}" for k, v in summary["candidates_skipped"].items()),
        f"- positive scores: {summary['positive_scores']}",
        f"- negative scores: {summary['negative_scores']}",
        f"- {plural(summary['documents'], 'document')}, {plural(summary['queries'], 'query', 'queries')}, "
        f"{summary['seconds']} s",
    ]
    return "\n".join(lines)
