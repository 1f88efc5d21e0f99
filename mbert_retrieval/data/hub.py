"""Retrieval datasets from the Hugging Face hub (pinned commits), as the same ``RetrievalDataset``.

The files of one commit are fetched with ``huggingface_hub.snapshot_download`` (only the folders
needed; cached, so a second run works offline) or read from a local folder holding a copy of the
repository (tests, air-gapped machines). Each file is read on its own with ``datasets`` (JSON Lines,
gzipped or not, or Parquet): reading a config's splits together fails when their columns differ.

Layouts (``config.HubSource`` names them):

- ``beir`` (CoIR, MTEB-style repositories written by ``push_to_hub``): config ``default`` in
  ``data/``, any other config in a folder of that name; a split's files are ``<split>-*.parquet``
  (or ``.jsonl[.gz]``, or ``<split>/*.parquet`` as in the hub's parquet conversion). Corpus
  ``_id, title, text``; queries ``_id, text`` (and ``partition``); qrels ``query-id, corpus-id, score``.
- ``longembed`` (``dwzhu/LongEmbed``): ``<config>/{corpus,queries,qrels}.jsonl`` with
  ``doc_id, text`` / ``qid, text`` / ``qid, doc_id`` (relevance 1), and ``context_length`` in
  needle and passkey, whose subsets are the context lengths (MTEB's ``test_<length>`` splits).
- ``mldr`` (``Shitao/MLDR``): ``mldr-v1.0-<lang>/corpus.jsonl.gz`` (``docid, text``) and
  ``<split>.jsonl.gz`` (``query_id, query, positive_passages: [{docid, text}]``); each positive
  passage is relevant (1), as MTEB's ``MultiLongDocRetrieval`` reads it.

Strict as the BEIR loader: a missing column, a missing or empty id, a duplicate document or query
id and a non-integer relevance are one-line ``DataError``s naming repository, commit, file and row;
qrels naming unknown documents are kept and counted, qrels for unknown queries dropped and counted.
The only module besides ``data/training.py`` that imports ``datasets``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mbert_retrieval.config import HubSource
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.types import Qrels, RetrievalDataset, document_text

log = logging.getLogger(__name__)

_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".gz": "json"}


def _label(hub: HubSource) -> str:
    return f"{hub.repo}@{hub.revision[:12]}"


def _snapshot(hub: HubSource, patterns: list[str]) -> Path:
    """The local root holding the files matching ``patterns`` (``folder/*``, ``folder/file``) of the
    pinned commit: a local copy, or the hub cache (only those files are downloaded)."""
    local = Path(hub.repo).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        root = snapshot_download(hub.repo, repo_type="dataset", revision=hub.revision, allow_patterns=patterns)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(_label(hub), f"cannot fetch {', '.join(patterns)} from the hub: {first}") from None
    return Path(root)


def _split_files(root: Path, folder: str, split: str, hub: HubSource) -> list[Path]:
    """A split's data files in a config folder: ``<split>-*.parquet`` / ``<split>.jsonl`` (``push_to_hub``)
    or ``<split>/*.parquet`` (the hub's parquet conversion)."""
    base = root / folder
    files = sorted(
        p
        for p in base.glob(f"{split}*")
        if p.is_file() and (p.name.startswith(f"{split}-") or p.name.split(".")[0] == split) and (p.suffix in _SUFFIXES)
    )
    if not files and (base / split).is_dir():
        files = sorted(p for p in (base / split).iterdir() if p.is_file() and p.suffix in _SUFFIXES)
    if not files:
        present = sorted(p.name for p in base.glob("*")) if base.is_dir() else []
        raise DataError(
            f"{_label(hub)}/{folder}",
            f"no files for split {split!r} (expected {split}-*.parquet, {split}.jsonl or {split}/*.parquet); "
            f"found: {present or 'nothing'}",
        )
    return files


def _rows(
    files: list[Path], hub: HubSource, columns: list[str], cache_dir: str | None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(file label, row number, row)`` for each row of ``files`` (1-based rows), with ``columns`` checked."""
    import datasets

    for path in files:
        builder = _SUFFIXES[path.suffix]
        label = f"{_label(hub)}/{path.parent.name}/{path.name}"
        try:
            table = datasets.load_dataset(builder, data_files=[str(path)], split="train", cache_dir=cache_dir)
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(label, f"cannot read: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DataError(label, f"missing column(s) {missing}; columns: {table.column_names}")
        for i, row in enumerate(table, start=1):
            yield label, i, row


def _id(label: str, row_no: int, row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise DataError(label, f"missing or empty id ({value!r})", line=row_no, field=key)
    return str(value)


def _text(label: str, row_no: int, row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(label, f"must be a string, got {type(value).__name__}", line=row_no, field=key)
    return value


class _Builder:
    """Collects corpus, queries and qrels with the BEIR loader's checks and warnings."""

    def __init__(self) -> None:
        self.corpus_ids: list[str] = []
        self.corpus_texts: list[str] = []
        self.seen_docs: dict[str, str] = {}
        self.queries: dict[str, str] = {}
        self.qrels: Qrels = {}
        self.warnings: Counter[str] = Counter()

    def doc(self, label: str, row_no: int, doc_id: str, text: str) -> None:
        if doc_id in self.seen_docs:
            raise DataError(label, f"duplicate document id {doc_id!r}", line=row_no, field="id")
        self.seen_docs[doc_id] = label
        if not text:
            self.warnings["empty documents (kept)"] += 1
        self.corpus_ids.append(doc_id)
        self.corpus_texts.append(text)

    def query(self, label: str, row_no: int, qid: str, text: str) -> None:
        if qid in self.queries:
            raise DataError(label, f"duplicate query id {qid!r}", line=row_no, field="id")
        if not text.strip():
            self.warnings["empty queries (kept)"] += 1
        self.queries[qid] = text

    def judge(self, label: str, row_no: int, qid: str, doc_id: str, score: Any) -> None:
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        if isinstance(score, bool) or not isinstance(score, int):
            raise DataError(label, f"relevance must be an integer, got {score!r}", line=row_no, field="score")
        per_query = self.qrels.setdefault(qid, {})
        if doc_id in per_query:
            self.warnings["duplicate qrels lines (last one kept)"] += 1
        per_query[doc_id] = score

    def build(self, name: str, split: str, source: str) -> RetrievalDataset:
        if not self.corpus_ids:
            raise DataError(source, "the corpus holds no documents")
        for qid in list(self.qrels):
            if qid not in self.queries:
                self.warnings["qrels for unknown queries (dropped)"] += len(self.qrels.pop(qid))
                continue
            unknown = sum(1 for d in self.qrels[qid] if d not in self.seen_docs)
            if unknown:
                self.warnings["qrels for unknown documents (kept, never retrieved)"] += unknown
        if not self.qrels:
            raise DataError(source, f"no judgements left for any known query in split {split!r}")
        for what, count in sorted(self.warnings.items()):
            log.warning("%s: %d %s", source, count, what)
        return RetrievalDataset(
            name=name,
            split=split,
            corpus_ids=self.corpus_ids,
            corpus_texts=self.corpus_texts,
            queries={qid: self.queries[qid] for qid in self.qrels},
            qrels=self.qrels,
            source=source,
            warnings=dict(self.warnings),
        )


def _folder(config: str) -> str:
    return "data" if config == "default" else config


def _load_beir(hub: HubSource, split: str, subset: str | None, name: str, cache_dir: str | None) -> RetrievalDataset:
    def cfg(template: str) -> str:
        if "{subset}" in template and subset is None:
            raise DataError(_label(hub), f"config {template!r} needs a subset (list them under 'subsets')")
        return template.replace("{subset}", subset or "")

    corpus_dir, queries_dir, qrels_dir = (
        _folder(cfg(c)) for c in (hub.corpus_config, hub.queries_config, hub.qrels_config)
    )
    root = _snapshot(
        hub, [f"{qrels_dir}/{split}*", f"{queries_dir}/{hub.queries_split}*", f"{corpus_dir}/{hub.corpus_split}*"]
    )
    b = _Builder()
    qrels_files = _split_files(root, qrels_dir, split, hub)
    for label, i, row in _rows(qrels_files, hub, ["query-id", "corpus-id", "score"], cache_dir):
        b.judge(label, i, _id(label, i, row, "query-id"), _id(label, i, row, "corpus-id"), row["score"])
    query_columns = ["_id", "text"] + (["partition"] if hub.queries_partition else [])
    for label, i, row in _rows(_split_files(root, queries_dir, hub.queries_split, hub), hub, query_columns, cache_dir):
        if hub.queries_partition and row["partition"] != split:
            continue
        b.query(label, i, _id(label, i, row, "_id"), _text(label, i, row, "text"))
    for label, i, row in _rows(_split_files(root, corpus_dir, hub.corpus_split, hub), hub, ["_id", "text"], cache_dir):
        doc = document_text(_text(label, i, row, "title"), _text(label, i, row, "text"))
        b.doc(label, i, _id(label, i, row, "_id"), doc)
    return b.build(name, split, f"{_label(hub)} {qrels_dir}")


def _load_longembed(
    hub: HubSource, split: str, subset: str | None, name: str, cache_dir: str | None
) -> RetrievalDataset:
    assert hub.config is not None
    root = _snapshot(hub, [f"{hub.config}/*"])
    length = None
    if subset is not None:
        try:
            length = int(subset)
        except ValueError:
            raise DataError(
                _label(hub), f"LongEmbed subsets are context lengths (256, 512, ...), got {subset!r}"
            ) from None

    def files(stem: str) -> list[Path]:
        path = root / hub.config / f"{stem}.jsonl"  # type: ignore[operator]
        if not path.is_file():
            raise DataError(f"{_label(hub)}/{hub.config}/{stem}.jsonl", "file not found in the repository copy")
        return [path]

    def keep(row: dict[str, Any], label: str, i: int) -> bool:
        if length is None:
            return True
        if "context_length" not in row:
            raise DataError(label, "no context_length to select the subset by", line=i, field="context_length")
        return int(row["context_length"]) == length

    b = _Builder()
    for label, i, row in _rows(files("qrels"), hub, ["qid", "doc_id"], cache_dir):
        if keep(row, label, i):
            b.judge(label, i, _id(label, i, row, "qid"), _id(label, i, row, "doc_id"), 1)
    for label, i, row in _rows(files("queries"), hub, ["qid", "text"], cache_dir):
        if keep(row, label, i):
            b.query(label, i, _id(label, i, row, "qid"), _text(label, i, row, "text"))
    for label, i, row in _rows(files("corpus"), hub, ["doc_id", "text"], cache_dir):
        if keep(row, label, i):
            b.doc(label, i, _id(label, i, row, "doc_id"), _text(label, i, row, "text"))
    return b.build(name, split, f"{_label(hub)} {hub.config}" + (f" context {length}" if length else ""))


def _load_mldr(hub: HubSource, split: str, subset: str | None, name: str, cache_dir: str | None) -> RetrievalDataset:
    folder = f"mldr-v1.0-{hub.config}"
    root = _snapshot(hub, [f"{folder}/corpus.jsonl*", f"{folder}/{split}.jsonl*"])  # not the 1.3 GB train file

    def file(stem: str) -> list[Path]:
        for candidate in (root / folder / f"{stem}.jsonl.gz", root / folder / f"{stem}.jsonl"):
            if candidate.is_file():
                return [candidate]
        present = sorted(p.name for p in (root / folder).glob("*")) if (root / folder).is_dir() else []
        raise DataError(
            f"{_label(hub)}/{folder}", f"no {stem}.jsonl.gz (split {stem!r}); found: {present or 'nothing'}"
        )

    b = _Builder()
    for label, i, row in _rows(file(split), hub, ["query_id", "query", "positive_passages"], cache_dir):
        qid = _id(label, i, row, "query_id")
        b.query(label, i, qid, _text(label, i, row, "query"))
        positives = row["positive_passages"] or []
        if not positives:
            raise DataError(label, "no positive passage", line=i, field="positive_passages")
        for passage in positives:
            b.judge(label, i, qid, _id(label, i, passage, "docid"), 1)
    for label, i, row in _rows(file("corpus"), hub, ["docid", "text"], cache_dir):
        b.doc(label, i, _id(label, i, row, "docid"), _text(label, i, row, "text"))
    return b.build(name, split, f"{_label(hub)} {folder}")


_LOADERS = {"beir": _load_beir, "longembed": _load_longembed, "mldr": _load_mldr}


def load_hub_dataset(
    hub: HubSource, split: str, *, subset: str | None = None, name: str = "", cache_dir: str | Path | None = None
) -> RetrievalDataset:
    """Load one split (and subset: a CodeSearchNet language, a LongEmbed context length) of a hub dataset.

    ``cache_dir``: where ``datasets`` keeps its Arrow copies of the files (default: its own cache).
    """
    return _LOADERS[hub.format](hub, split, subset, name or hub.repo, str(cache_dir) if cache_dir else None)


__all__ = ["load_hub_dataset"]
