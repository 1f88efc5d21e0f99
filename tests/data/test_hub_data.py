"""Hub loaders (MLDR, LongEmbed, CoIR) on local copies laid out as the hub repositories are: no network."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mbert_retrieval.config import DatasetSpec, HubSource
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.data.hub import load_hub_dataset

datasets = pytest.importorskip("datasets")

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrow copies made by ``datasets`` go to the test's folder, not the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def _jsonl(path: Path, rows: list[dict], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))


# ---- LongEmbed: dwzhu/LongEmbed, <config>/{corpus,queries,qrels}.jsonl -------------------------------


@pytest.fixture
def longembed_repo(tmp_path: Path) -> Path:
    root = tmp_path / "LongEmbed"
    (root / "README.md").parent.mkdir(parents=True)
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(
            f"  - config_name: {c}\n    data_files:\n"
            + "".join(f"      - split: {s}\n        path: {c}/{s}.jsonl\n" for s in ("corpus", "queries", "qrels"))
            for c in ("qmsum", "needle")
        )
        + "---\n"
    )
    _jsonl(
        root / "qmsum" / "corpus.jsonl",
        [{"doc_id": "TS3012d", "text": "Project Manager: Can I close this ?"}, {"doc_id": "ES2002b", "text": "Hi."}],
    )
    _jsonl(root / "qmsum" / "queries.jsonl", [{"qid": "q1", "text": "closing"}, {"qid": "q2", "text": "greeting"}])
    _jsonl(root / "qmsum" / "qrels.jsonl", [{"qid": "q1", "doc_id": "TS3012d"}, {"qid": "q2", "doc_id": "ES2002b"}])
    needle_docs, needle_queries, needle_qrels = [], [], []
    for length in (256, 512):
        for i in range(3):
            needle_docs.append({"doc_id": f"d{length}_{i}", "text": f"haystack {length} {i}", "context_length": length})
        needle_queries.append({"qid": f"n{length}", "text": f"needle {length}", "context_length": length})
        needle_qrels.append({"qid": f"n{length}", "doc_id": f"d{length}_1", "context_length": length})
    _jsonl(root / "needle" / "corpus.jsonl", needle_docs)
    _jsonl(root / "needle" / "queries.jsonl", needle_queries)
    _jsonl(root / "needle" / "qrels.jsonl", needle_qrels)
    return root


def _longembed(repo: Path, config: str) -> HubSource:
    return HubSource(repo=str(repo), revision=REV, format="longembed", config=config)


def test_longembed_qmsum(longembed_repo: Path, tmp_path: Path) -> None:
    ds = load_hub_dataset(_longembed(longembed_repo, "qmsum"), "test", name="qmsum", cache_dir=tmp_path / "c")
    assert ds.name == "qmsum" and ds.split == "test"
    assert ds.corpus_ids == ["TS3012d", "ES2002b"]
    assert ds.corpus_texts[0] == "Project Manager: Can I close this ?"
    assert ds.queries == {"q1": "closing", "q2": "greeting"}
    assert ds.qrels == {"q1": {"TS3012d": 1}, "q2": {"ES2002b": 1}}
    assert REV[:12] in ds.source


def test_longembed_needle_per_context_length(longembed_repo: Path, tmp_path: Path) -> None:
    hub = _longembed(longembed_repo, "needle")
    ds = load_hub_dataset(hub, "test", subset="512", name="needle/512", cache_dir=tmp_path / "c")
    assert ds.corpus_ids == ["d512_0", "d512_1", "d512_2"]
    assert ds.queries == {"n512": "needle 512"} and ds.qrels == {"n512": {"d512_1": 1}}
    with pytest.raises(DataError, match="context lengths"):
        load_hub_dataset(hub, "test", subset="long", cache_dir=tmp_path / "c")


def test_longembed_missing_column_names_file(longembed_repo: Path, tmp_path: Path) -> None:
    _jsonl(longembed_repo / "qmsum" / "queries.jsonl", [{"id": "q1", "text": "closing"}])
    with pytest.raises(DataError, match=r"qmsum/queries\.jsonl: missing column\(s\) \['qid'\]"):
        load_hub_dataset(_longembed(longembed_repo, "qmsum"), "test", cache_dir=tmp_path / "c")


def test_duplicate_document_id_is_an_error(longembed_repo: Path, tmp_path: Path) -> None:
    _jsonl(longembed_repo / "qmsum" / "corpus.jsonl", [{"doc_id": "a", "text": "x"}, {"doc_id": "a", "text": "y"}])
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: field 'id': duplicate document id 'a'"):
        load_hub_dataset(_longembed(longembed_repo, "qmsum"), "test", cache_dir=tmp_path / "c")


# ---- MLDR: Shitao/MLDR, mldr-v1.0-en/{corpus,dev,test}.jsonl.gz -----------------------------------------


@pytest.fixture
def mldr_repo(tmp_path: Path) -> Path:
    root = tmp_path / "MLDR"
    folder = root / "mldr-v1.0-en"
    corpus = [{"docid": f"doc-en-{i}", "text": f"A long article number {i}. " * 50} for i in range(5)]
    _jsonl(folder / "corpus.jsonl.gz", corpus, gz=True)
    for split, qids in (("test", ["q-en-0", "q-en-1"]), ("dev", ["q-en-9"])):
        rows = []
        for j, qid in enumerate(qids):
            pos = {"docid": f"doc-en-{j + 1}", "text": corpus[j + 1]["text"]}
            neg = [{"docid": "doc-en-0", "text": corpus[0]["text"]}]
            rows.append(
                {"query_id": qid, "query": f"question {qid}?", "positive_passages": [pos], "negative_passages": neg}
            )
        _jsonl(folder / f"{split}.jsonl.gz", rows, gz=True)
    return root


def test_mldr_test_and_dev(mldr_repo: Path, tmp_path: Path) -> None:
    hub = HubSource(repo=str(mldr_repo), revision=REV, format="mldr", config="en")
    ds = load_hub_dataset(hub, "test", name="mldr", cache_dir=tmp_path / "c")
    assert ds.n_docs == 5 and ds.corpus_ids[0] == "doc-en-0"
    assert ds.queries == {"q-en-0": "question q-en-0?", "q-en-1": "question q-en-1?"}
    assert ds.qrels == {"q-en-0": {"doc-en-1": 1}, "q-en-1": {"doc-en-2": 1}}  # negatives are not judged
    dev = load_hub_dataset(hub, "dev", cache_dir=tmp_path / "c")
    assert dev.qrels == {"q-en-9": {"doc-en-1": 1}}
    with pytest.raises(DataError, match=r"no train\.jsonl\.gz .*found: \['corpus\.jsonl\.gz', 'dev\.jsonl\.gz'"):
        load_hub_dataset(hub, "train", cache_dir=tmp_path / "c")


# ---- CoIR: push_to_hub layout, <config>/<split>-*.parquet (default config in data/) ------------------------


def _coir_tables(prefix: str) -> tuple[list[dict], list[dict], dict[str, list[dict]]]:
    corpus = [
        {"_id": f"{prefix}c{i}", "title": "", "text": f"docstring {i}", "partition": "test", "language": prefix}
        for i in range(4)
    ]
    queries = [
        {"_id": f"{prefix}q0", "title": "", "text": "def f(): pass", "partition": "test", "language": prefix},
        {"_id": f"{prefix}q1", "title": "", "text": "def g(): pass", "partition": "test", "language": prefix},
        {"_id": f"{prefix}q7", "title": "", "text": "def h(): pass", "partition": "train", "language": prefix},
    ]
    qrels = {
        "test": [
            {"query-id": f"{prefix}q0", "corpus-id": f"{prefix}c0", "score": 1},
            {"query-id": f"{prefix}q1", "corpus-id": f"{prefix}c1", "score": 1},
        ],
        "train": [{"query-id": f"{prefix}q7", "corpus-id": f"{prefix}c3", "score": 1}],
    }
    return corpus, queries, qrels


@pytest.fixture
def csn_repo(tmp_path: Path) -> Path:
    root = tmp_path / "CodeSearchNet"
    for lang in ("python", "go"):
        corpus, queries, qrels = _coir_tables(lang)
        _parquet(root / f"{lang}-corpus" / "corpus-00000-of-00001.parquet", corpus)
        _parquet(root / f"{lang}-queries" / "queries-00000-of-00001.parquet", queries)
        for split, rows in qrels.items():
            _parquet(root / f"{lang}-qrels" / f"{split}-00000-of-00001.parquet", rows)
    return root


def _csn(repo: Path) -> HubSource:
    return HubSource(
        repo=str(repo),
        revision=REV,
        format="beir",
        corpus_config="{subset}-corpus",
        queries_config="{subset}-queries",
        qrels_config="{subset}-qrels",
        queries_partition=True,
    )


def test_coir_codesearchnet_language(csn_repo: Path, tmp_path: Path) -> None:
    ds = load_hub_dataset(_csn(csn_repo), "test", subset="go", name="codesearchnet/go", cache_dir=tmp_path / "c")
    assert ds.corpus_ids == ["goc0", "goc1", "goc2", "goc3"]
    assert ds.queries == {"goq0": "def f(): pass", "goq1": "def g(): pass"}  # the train-partition query is left out
    assert ds.qrels == {"goq0": {"goc0": 1}, "goq1": {"goc1": 1}}
    train = load_hub_dataset(_csn(csn_repo), "train", subset="python", cache_dir=tmp_path / "c")
    assert train.qrels == {"pythonq7": {"pythonc3": 1}}
    # the hub's parquet conversion puts a split in its own folder: <config>/<split>/0000.parquet
    (csn_repo / "go-qrels" / "test-00000-of-00001.parquet").rename(csn_repo / "go-qrels" / "test.tmp")
    (csn_repo / "go-qrels" / "test").mkdir()
    (csn_repo / "go-qrels" / "test.tmp").rename(csn_repo / "go-qrels" / "test" / "0000.parquet")
    converted = load_hub_dataset(_csn(csn_repo), "test", subset="go", cache_dir=tmp_path / "c")
    assert converted.qrels == ds.qrels
    with pytest.raises(DataError, match="needs a subset"):
        load_hub_dataset(_csn(csn_repo), "test", cache_dir=tmp_path / "c")


def test_coir_stackoverflow_default_config_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "stackoverflow-qa"
    corpus, queries, qrels = _coir_tables("so")
    _parquet(root / "corpus" / "corpus-00000-of-00001.parquet", corpus)
    _parquet(root / "queries" / "queries-00000-of-00001.parquet", queries)
    _parquet(
        root / "data" / "test-00000-of-00001.parquet",
        [*qrels["test"], {"query-id": "nope", "corpus-id": "x", "score": 1}],
    )
    hub = HubSource(repo=str(root), revision=REV, format="beir")
    ds = load_hub_dataset(hub, "test", name="stackoverflow-qa", cache_dir=tmp_path / "c")
    # without partition filtering every query is read; only the judged ones are kept (as BEIR does)
    assert set(ds.queries) == {"soq0", "soq1"} and ds.warnings == {"qrels for unknown queries (dropped)": 1}
    with pytest.raises(DataError, match=r"data: no files for split 'dev'.*found: \['test-00000-of-00001.parquet'\]"):
        load_hub_dataset(hub, "dev", cache_dir=tmp_path / "c")
    _parquet(
        root / "data" / "test-00000-of-00001.parquet", [{"query-id": "soq0", "corpus-id": "soc0", "score": "high"}]
    )
    with pytest.raises(DataError, match="relevance must be an integer"):
        load_hub_dataset(hub, "test", cache_dir=tmp_path / "c2")


# ---- the suite entry: local BEIR folder first, the hub only with --download ----------------------------------


def test_iter_datasets_prefers_a_local_beir_folder(small_beir: Path, tmp_path: Path) -> None:
    hub = HubSource(repo="dwzhu/LongEmbed", revision=REV, format="longembed", config="qmsum")
    spec = DatasetSpec(name="qmsum", folder=small_beir.name, source="hub", hub=hub)
    (ds,) = iter_datasets(spec, data_dir=small_beir.parent)
    assert ds.source == str(small_beir) and ds.n_docs == 4
    missing = DatasetSpec(name="qmsum", folder="absent", source="hub", hub=hub)
    with pytest.raises(DataError, match=r"pass --download to load dwzhu/LongEmbed at 0123456789ab"):
        list(iter_datasets(missing, data_dir=tmp_path))


def test_hub_fetch_failure_is_one_line(tmp_path: Path) -> None:
    # HF_HUB_OFFLINE is set for the tests (conftest): nothing cached for this repository
    hub = HubSource(repo="nobody/no-such-dataset", revision=REV, format="mldr", config="en")
    spec = DatasetSpec(name="mldr", source="hub", hub=hub)
    with pytest.raises(DataError, match=r"nobody/no-such-dataset@0123456789ab: cannot fetch mldr-v1.0-en/corpus"):
        list(iter_datasets(spec, data_dir=tmp_path, download=True))


def test_iter_datasets_hub_subsets_from_a_local_copy(csn_repo: Path, tmp_path: Path) -> None:
    spec = DatasetSpec(name="codesearchnet", source="hub", hub=_csn(csn_repo), subsets=["python", "go"])
    names = [ds.name for ds in iter_datasets(spec, data_dir=tmp_path / "none")]
    assert names == ["codesearchnet/python", "codesearchnet/go"]
