"""The shipped suites (eval/*.yaml): they load, every hub dataset is pinned, and they say what the
paper's numbers need (split, document length, metric)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbert_retrieval.catalog import list_suites, load_suite
from mbert_retrieval.config import load_suite_file
from mbert_retrieval.core.errors import ConfigError


def test_every_shipped_suite_loads_and_hub_data_is_pinned() -> None:
    names = set(list_suites())
    assert {"beir", "stdlib", "mldr", "longembed", "codesearchnet", "coir"} <= names
    for name in names:
        suite = load_suite(name)
        for d in suite.datasets:
            if d.source == "hub":
                assert d.hub is not None and len(d.hub.revision) == 40, (name, d.name)


def test_mldr_states_split_length_and_metric() -> None:
    suite = load_suite("mldr")
    assert suite.main_metric == "nDCG@10"
    mldr = suite.dataset("mldr")
    assert (mldr.split, mldr.document_length, mldr.hub.repo, mldr.hub.config) == ("test", 8192, "Shitao/MLDR", "en")
    assert suite.dataset("mldr-dev").split == "dev"


def test_longembed_and_code_suites() -> None:
    longembed = load_suite("longembed")
    assert [d.name for d in longembed.datasets] == [
        "narrativeqa", "qmsum", "summ-screen-fd", "2wikimqa", "needle", "passkey"
    ]  # fmt: skip
    assert longembed.dataset("qmsum").folder_name == "qmsum-longembed"  # runs offline from shared/data
    needle = longembed.dataset("needle")
    assert needle.main_metric == "nDCG@1" and needle.subsets[0] == "256" and needle.subsets[-1] == "32768"
    csn = load_suite("codesearchnet").dataset("codesearchnet")
    assert csn.subsets == ["go", "java", "javascript", "php", "python", "ruby"] and csn.hub.queries_partition
    coir = load_suite("coir")
    assert coir.dataset("stackoverflow-qa").hub.repo == "CoIR-Retrieval/stackoverflow-qa"
    assert coir.dataset("cosqa").source == "beir" and coir.dataset("cosqa").folder_name == "cosqa-dev"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: x, source: hub}", "source 'hub' and the 'hub' section go together"),
        ("{name: x, source: hub, hub: {repo: a/b, revision: main, format: beir}}", "revision: String should match"),
        ("{name: x, source: hub, hub: {repo: a/b, revision: " + "a" * 40 + ", format: mldr}}", "needs 'config'"),
        ("{name: x, source: hub, hub: {repo: a/b, revision: " + "a" * 40 + ", format: csv}}", "hub.format"),
        ("{name: x, main_metric: nDCG@5}", "main_metric 'nDCG@5' is not among metrics"),
        ("{name: x, hub_repo: a/b}", "datasets.0.hub_repo: unknown key"),
    ],
)
def test_suite_errors_name_file_line_and_key(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nmetrics: [nDCG@10]\ndatasets:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_suite_file(path)
    assert str(err.value).startswith(f"{path}:")
