"""BEIR download by name: exercised with file:// URLs (no network), atomic and safe."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mbert_retrieval.config import DatasetSpec
from mbert_retrieval.core.errors import DataError, MbertRetrievalError
from mbert_retrieval.data import iter_datasets
from mbert_retrieval.data.download import BEIR_URL, beir_url, download_beir


def _zip_folder(folder: Path, archive: Path, arcroot: str) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, f"{arcroot}/{p.relative_to(folder)}")


def test_default_url_is_the_official_beir_host() -> None:
    assert beir_url("scifact") == f"{BEIR_URL}/scifact.zip"
    assert BEIR_URL.startswith("https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets")


def test_download_unpacks_and_loads(tmp_path: Path, small_beir: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _zip_folder(small_beir, mirror / "scifact.zip", "scifact")
    data_dir = tmp_path / "data"
    folder = download_beir("scifact", data_dir, base_url=mirror.as_uri(), progress=False)
    assert folder == data_dir / "scifact"
    assert sorted(p.name for p in data_dir.iterdir()) == ["scifact"]  # no temp files left
    ds = next(iter_datasets(DatasetSpec(name="scifact"), data_dir=data_dir))
    assert ds.n_docs == 4


def test_download_through_iter_datasets_env_url(tmp_path: Path, small_beir: Path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _zip_folder(small_beir, mirror / "fiqa.zip", "fiqa")
    monkeypatch.setenv("MBERT_RETRIEVAL_BEIR_URL", mirror.as_uri())
    ds = next(iter_datasets(DatasetSpec(name="fiqa"), data_dir=tmp_path / "data", download=True))
    assert ds.name == "fiqa" and set(ds.queries) == {"q1", "q2"}


def test_failed_download_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(MbertRetrievalError, match="cannot download"):
        download_beir("nfcorpus", tmp_path / "data", base_url=(tmp_path / "nowhere").as_uri(), progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_archive_without_the_folder_or_escaping_is_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "a.zip", "w") as zf:
        zf.writestr("other/corpus.jsonl", "{}")
    with pytest.raises(DataError, match="holds no folder 'a'"):
        download_beir("a", tmp_path / "data", base_url=mirror.as_uri(), progress=False)
    with zipfile.ZipFile(mirror / "b.zip", "w") as zf:
        zf.writestr("../../evil.txt", "x")
    with pytest.raises(DataError, match="outside the target folder"):
        download_beir("b", tmp_path / "data", base_url=mirror.as_uri(), progress=False)
    (mirror / "c.zip").write_text("not a zip")
    with pytest.raises(DataError, match="not a zip archive"):
        download_beir("c", tmp_path / "data", base_url=mirror.as_uri(), progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "data").iterdir()) == []
