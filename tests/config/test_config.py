"""Suites: every shipped YAML loads; bad files get one line naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbert_retrieval.catalog import list_suites, load_suite
from mbert_retrieval.config import SuiteSpec
from mbert_retrieval.core.errors import ConfigError

REFERENCE_COLUMNS = [
    "nfcorpus",
    "scifact",
    "trec-covid",
    "fiqa",
    "arguana",
    "climate-fever",
    "dbpedia-entity",
    "fever",
    "hotpotqa",
    "msmarco",
    "nq",
    "quora",
    "scidocs",
    "webis-touche2020",
    "cqadupstack",
]


def test_every_shipped_suite_loads() -> None:
    suites = list_suites()
    assert {"beir", "stdlib"} <= set(suites)
    for name in suites:
        assert isinstance(load_suite(name), SuiteSpec)


def test_beir_suite_has_the_papers_15_datasets() -> None:
    beir = load_suite("beir")
    assert [d.name for d in beir.datasets] == REFERENCE_COLUMNS
    assert beir.dataset("msmarco").split == "dev"
    assert {d.name for d in beir.datasets if d.ignore_identical_ids} == {"arguana", "quora"}
    assert len(beir.dataset("cqadupstack").subsets or []) == 12
    assert beir.top_k == 1000 and beir.main_metric == "nDCG@10"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ndatasets:\n  - name: a\n    splitt: test\n", "x.yaml:4: datasets.0.splitt: unknown key"),
        ("name: x\nmetrics: [nDCG@10, MRR]\ndatasets: []\n", "x.yaml:2: metrics: unknown measure 'MRR'"),
        ("name: x\ntop_k: many\ndatasets: []\n", "x.yaml:2: top_k: Input should be a valid integer"),
        ("name: x\n", "x.yaml:1: datasets: Field required"),
        ("name: x\ndatasets:\n  - {name: a}\n  - {name: a}\n", "dataset names repeat: ['a']"),
        ("name: x\ntop_k: 5\ndatasets: []\n", "top_k 5 is below the deepest metric cutoff 100"),
        ("name: x\ndatasets:\n  - {name: a, max_docs: 3}\n", "max_docs applies only to source 'stdlib'"),
        ("name: [x\n", "x.yaml:2: YAML syntax error"),
        ("- just a list\n", "a suite file must be a mapping"),
    ],
)
def test_bad_suite_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_suite_and_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown suite 'nope'; shipped: "):
        load_suite("nope")
    with pytest.raises(ConfigError, match="suite 'beir' has no dataset 'scifacts'"):
        load_suite("beir").dataset("scifacts")
