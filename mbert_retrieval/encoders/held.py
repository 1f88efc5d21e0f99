"""What the dense and the ColBERT encoder share: each holds a sentence-transformers model (``model``) loaded
through ``backend.plan_load``; the two differ in the model they build, the settings that change an
embedding, and what ``describe()`` says between the common head and tail.

``HeldModel`` is their base class (fingerprint, ``describe``, ``save``, the transformer inside);
``load_held`` the load both run, with its one-line error; ``count_longer`` the token count behind both
``count_truncated``. Imports no third-party library: the subclasses' modules do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mbert_retrieval.core.checkpoint import check_checkpoint
from mbert_retrieval.core.errors import MbertRetrievalError
from mbert_retrieval.encoders.backend import Backend, LoadPlan, fingerprint_module, plan_load, quiet_loading


def load_held(
    model: str,
    build: Callable[[LoadPlan], Any],
    *,
    device: str | None,
    attn_implementation: str | None,
    trust_remote_code: bool,
    what: str = "",
    passthrough: tuple[type[BaseException], ...] = (),
) -> tuple[LoadPlan, Any]:
    """Plan the load of ``model`` (device, dtype, attention), check the checkpoint, and ``build(plan)``
    with transformers' load reports quiet; ``(plan, built)``. Whatever the library raises (other than
    ``passthrough``) becomes one line naming the model and the cause: ``cannot load model 'M'WHAT: ...``."""
    plan = plan_load(model, device, attn_implementation)
    check_checkpoint(plan.source, trust_remote_code=trust_remote_code)
    try:
        with quiet_loading():
            return plan, build(plan)
    except passthrough:
        raise
    except Exception as e:  # whatever the library raises: one line naming the model and the cause
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MbertRetrievalError(f"cannot load model {model!r}{what}: {first}") from e


def count_longer(tokenizer: Any, texts: Sequence[str], prompt: str, limit: int) -> int:
    """How many of ``texts``, each after ``prompt``, tokenize (special tokens included) to more than
    ``limit`` tokens; tokenized 1,024 at a time, untruncated."""
    count = 0
    for start in range(0, len(texts), 1024):
        batch = [prompt + t for t in texts[start : start + 1024]]
        ids = tokenizer(batch, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        count += sum(1 for x in ids if len(x) > limit)
    return count


class HeldModel:
    """Base of ``DenseEncoder`` and ``ColBERTEncoder``: the facts and the hash of a held model.

    A subclass sets ``name``, ``model``, ``model_type``, ``backend``, ``unpad`` and ``_fingerprint``
    (``None``) in its ``__init__``, and says which settings change an embedding
    (``_fingerprint_settings``) and what ``describe()`` records of its own (``_describe_own``)."""

    kind: str
    name: str
    model: Any
    model_type: str | None
    backend: Backend
    unpad: bool
    _fingerprint: str | None

    @property
    def transformer_model(self) -> Any:
        """The transformers model inside the first (Transformer) module."""
        first = self.model[0]
        return getattr(first, "auto_model", None) or getattr(first, "model", None)

    def _fingerprint_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def _describe_own(self) -> dict[str, Any]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A content hash of the weights and every setting that changes an embedding (not ``unpad``:
        the unpadded forward gives the same embeddings, so cached ones are reused)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_module(self.model, self._fingerprint_settings())
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """Everything a results file should record about this encoder."""
        return {
            "kind": self.kind,
            "name": self.name,
            "fingerprint": self.fingerprint(),
            "model_type": self.model_type,
            "dim": self.dim,  # type: ignore[attr-defined]  # a property of each subclass
            **self._describe_own(),
            "device": self.backend.device,
            "dtype": self.backend.dtype,
            "attn_implementation": self.backend.attn_implementation or "default",
            "unpadded": self.unpadded_path,  # type: ignore[attr-defined]
        }

    def save(self, path: str | Path) -> None:
        self.model.save(str(path))
