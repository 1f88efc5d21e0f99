"""Snippets: the first characters of each document, one JSON string per line, with byte offsets, so a
search result shows text without the corpus (written by ``index build`` and ``eval``, read by ``search``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from mbert_retrieval.core.io import atomic_path
from mbert_retrieval.core.types import snippet

SNIPPETS_FILE = "snippets.jsonl"
SNIPPET_OFFSETS_FILE = "snippets.offsets.npy"


def write_snippets(folder: Path, lines: Iterable[bytes]) -> None:
    """Write ``snippets.jsonl`` (one encoded line per document) and its ``int64`` offsets, atomically."""
    offsets = [0]
    with atomic_path(folder / SNIPPETS_FILE) as tmp, open(tmp, "wb") as f:
        for line in lines:
            f.write(line)
            offsets.append(offsets[-1] + len(line))
    with atomic_path(folder / SNIPPET_OFFSETS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(offsets, dtype=np.int64))


def snippet_lines(texts: Iterable[str]) -> Iterator[bytes]:
    for text in texts:
        yield (json.dumps(snippet(text), ensure_ascii=False) + "\n").encode("utf-8")


class Snippets:
    """Random access to ``snippets.jsonl`` through its offsets (nothing is loaded up front)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / SNIPPETS_FILE
        self.offsets = np.load(Path(folder) / SNIPPET_OFFSETS_FILE, mmap_mode="r")
        self._file = open(self.path, "rb")  # noqa: SIM115 - kept open for random reads; closed by close()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def raw(self, i: int) -> bytes:
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        self._file.seek(start)
        return self._file.read(stop - start)

    def __getitem__(self, i: int) -> str:
        return json.loads(self.raw(i))

    def close(self) -> None:
        self._file.close()
