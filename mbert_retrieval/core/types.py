"""Plain data passed between stages. Imports nothing from the rest of the package.

``Qrels`` and ``Run`` have the BEIR / pytrec_eval shape: ``{query_id: {doc_id: value}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Qrels = dict[str, dict[str, int]]
"""Relevance judgements: query id -> document id -> integer relevance (0 = judged non-relevant)."""

Run = dict[str, dict[str, float]]
"""Retrieval results: query id -> document id -> score (higher is better)."""


def document_text(title: str | None, text: str | None) -> str:
    """The text a document is encoded as: ``(title + " " + text).strip()``, as MTEB does."""
    return f"{title or ''} {text or ''}".strip()


def plural(n: int, word: str, many: str | None = None) -> str:
    """A count and its noun for messages: ``plural(1, "shard")`` -> ``"1 shard"``, ``plural(1234, "document")``
    -> ``"1,234 documents"``, ``plural(2, "query", "queries")`` -> ``"2 queries"`` (``many``: the irregular plural)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


@dataclass
class RetrievalDataset:
    """One evaluation dataset, loaded: the corpus, the queries that have judgements, the qrels.

    ``corpus_ids`` and ``corpus_texts`` are parallel lists in file order. ``queries`` holds only
    the queries that appear in ``qrels`` for the split (as BEIR does). ``warnings`` counts the
    tolerated problems found while loading (e.g. qrels naming an unknown document).
    """

    name: str
    split: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    queries: dict[str, str]
    qrels: Qrels
    source: str = ""
    warnings: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.corpus_ids) != len(self.corpus_texts):
            raise ValueError("corpus_ids and corpus_texts differ in length")

    @property
    def n_docs(self) -> int:
        return len(self.corpus_ids)

    def summary(self) -> str:
        n_judged = sum(len(d) for d in self.qrels.values())
        return (
            f"{self.name} [{self.split}]: {plural(self.n_docs, 'document')}, "
            f"{plural(len(self.queries), 'query', 'queries')}, {plural(n_judged, 'judgement')}"
        )


SNIPPET_CHARS = 300


def snippet(text: str, chars: int = SNIPPET_CHARS) -> str:
    """The first ``chars`` characters of a text, white space collapsed (for search results)."""
    short = " ".join(text[: chars * 2].split())
    return short if len(short) <= chars else short[: chars - 1].rstrip() + "…"
