"""The ``Index`` protocol: stores document embeddings under ids and answers top-k searches.

An index never sees text or a model: embeddings in, a ``Run`` out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from mbert_retrieval.core.types import Run


@runtime_checkable
class Index(Protocol):
    kind: str

    def __len__(self) -> int: ...

    def add(self, doc_ids: Sequence[str], embeddings: np.ndarray) -> None: ...

    def search(
        self, query_ids: Sequence[str], embeddings: np.ndarray, k: int, *, ignore_identical_ids: bool = False
    ) -> Run: ...

    def save(self, path: str | Path) -> None: ...
