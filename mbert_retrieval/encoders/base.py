"""The ``Encoder`` protocol: what the pipeline needs from any model, dense or multi-vector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into embeddings. Dense encoders return ``float32 [n, dim]``."""

    kind: str
    name: str

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str], desc: str = ...) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str], desc: str = ...) -> np.ndarray: ...

    def fingerprint(self) -> str:
        """A content hash that changes whenever an embedding could change."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the encoder, recorded beside every output."""
        ...
