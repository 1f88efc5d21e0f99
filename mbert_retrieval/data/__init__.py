"""Datasets: BEIR folders (local or downloaded by name), pinned hub datasets, the embedded stdlib code-search set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mbert_retrieval.config import DatasetSpec
from mbert_retrieval.core.errors import DataError
from mbert_retrieval.core.types import RetrievalDataset
from mbert_retrieval.data.beir import load_beir_folder


def iter_datasets(
    spec: DatasetSpec, *, data_dir: str | Path, split: str | None = None, download: bool = False
) -> Iterator[RetrievalDataset]:
    """Yield the dataset(s) of one suite entry, loaded one at a time (CQADupStack yields 12).

    ``data_dir/<folder>`` is used when it exists (a BEIR folder, for hub sources too); otherwise it
    is downloaded when ``download`` is set (BEIR zip; hub: the pinned commit, through the hub
    cache) or built (stdlib), else a clear error says where it was looked for.
    """
    data_dir = Path(data_dir)
    split = split or spec.split
    folder = data_dir / spec.folder_name
    if spec.source == "hub" and not folder.is_dir():
        assert spec.hub is not None
        if not download and not Path(spec.hub.repo).expanduser().is_dir():
            raise DataError(
                folder,
                f"dataset folder not found; pass --download to load {spec.hub.repo} at {spec.hub.revision[:12]} "
                f"from the hub, or point --data-dir at the folder that holds {spec.folder_name}/ (BEIR format)",
            )
        from mbert_retrieval.data.hub import load_hub_dataset

        for sub in spec.subsets or [None]:
            yield load_hub_dataset(spec.hub, split, subset=sub, name=f"{spec.name}/{sub}" if sub else spec.name)
        return
    if spec.source == "stdlib":
        from mbert_retrieval.data.stdlib import build_stdlib_dataset

        build_stdlib_dataset(folder, max_docs=spec.max_docs)
    elif not folder.is_dir():
        if not download:
            raise DataError(
                folder,
                f"dataset folder not found; point --data-dir at the folder that holds {spec.folder_name}/, "
                "or pass --download to fetch the BEIR zip",
            )
        from mbert_retrieval.data.download import download_beir

        download_beir(spec.folder_name, data_dir)
    if spec.subsets:
        for sub in spec.subsets:
            yield load_beir_folder(folder / sub, split, name=f"{spec.name}/{sub}")
    else:
        yield load_beir_folder(folder, split, name=spec.name)


__all__ = ["iter_datasets", "load_beir_folder"]
