"""Multi-vector (ColBERT) encoder: holds a ``pylate.models.ColBERT`` (never subclasses it).

The one module that imports ``pylate.models``. Loads a PyLate checkpoint, or a plain encoder
(ModernBERT, BERT) to which PyLate adds ``[Q]``/``[D]`` markers and a linear projection to
``embedding_size`` (randomly initialised: train it before trusting scores).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..checkpoint import check_checkpoint
from ..errors import ConfigError, MbertRetrievalError
from .backend import Backend, apply_verbosity, fingerprint_module, plan_load, unpad_default, unpadded_path
from .unpadded import unpadded

log = logging.getLogger(__name__)

DEFAULT_QUERY_LENGTH = 32
DEFAULT_EMBEDDING_SIZE = 128


class ColBERTEncoder:
    """Encode queries and documents into one L2-normalised vector per token (PyLate ColBERT).

    Args:
        model: hub id or local folder: a PyLate checkpoint or a plain transformers encoder.
        query_length: query tokens (default: the checkpoint's, else 32). With query expansion
            (on by default) queries are padded to this length with ``[MASK]`` tokens, which
            the model attends to; in fp16 this is known to produce NaNs.
        document_length: document tokens (default: the checkpoint's, else 180 as in training).
            Evaluation on long documents should raise it (up to 8192 for ModernBERT).
        query_expansion: pad queries with ``[MASK]`` (ColBERT's query augmentation).
        embedding_size: projection size for a plain encoder (default 128); a checkpoint keeps its own.
        batch_size, device, attn_implementation, trust_remote_code: as for ``DenseEncoder``.
        seed: seeds the random projection and marker embeddings added to a plain encoder.
        unpad: run ModernBERT through the unpadded forward (``encoders.unpadded``) for documents and
            for queries whose padding is not read back (all but ``[MASK]`` expansion with the
            expansion tokens masked out as keys, whose outputs are used). On by default.
    """

    kind = "colbert"

    def __init__(
        self,
        model: str,
        *,
        query_length: int | None = None,
        document_length: int | None = None,
        query_expansion: bool | None = None,
        embedding_size: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int = 32,
        device: str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        seed: int = 0,
        unpad: bool | None = None,
    ) -> None:
        import torch
        from pylate import models

        apply_verbosity()
        if normalize is False:
            raise ConfigError("ColBERT token vectors are always L2-normalised (MaxSim is a sum of cosines)")
        if max_seq_length is not None and document_length is None:
            document_length = max_seq_length
        self.name = model
        plan = plan_load(model, device, attn_implementation)
        check_checkpoint(plan.source, trust_remote_code=trust_remote_code)
        self.model_type = plan.model_type
        self.backend: Backend = plan.backend
        # A plain encoder gets a new projection and new [Q]/[D] embedding rows, randomly
        # initialised: seed them so the same command gives the same model (and fingerprint).
        rng_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.model = models.ColBERT(
                plan.source,
                device=self.backend.device,
                trust_remote_code=trust_remote_code,
                query_length=query_length,
                document_length=document_length,
                do_query_expansion=query_expansion,
                embedding_size=embedding_size,
                model_kwargs=plan.model_kwargs or None,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MbertRetrievalError(f"cannot load model {model!r} as ColBERT: {first}") from e
        finally:
            torch.random.set_rng_state(rng_state)
        positions = getattr(getattr(self.transformer_model, "config", None), "max_position_embeddings", None)
        self.max_position_embeddings = positions
        for what, value in (("query_length", self.model.query_length), ("document_length", self.model.document_length)):
            if positions and value > positions:
                raise ConfigError(f"{what} {value} exceeds the model's {positions} positions")
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.unpad = unpad_default(unpad)
        self._dim: int | None = None
        self._fingerprint: str | None = None

    # -- facts about the model ------------------------------------------------------------
    @property
    def transformer_model(self) -> Any:
        first = self.model[0]
        return getattr(first, "auto_model", None) or getattr(first, "model", None)

    @property
    def query_length(self) -> int:
        return int(self.model.query_length)

    @property
    def document_length(self) -> int:
        return int(self.model.document_length)

    def set_document_length(self, length: int) -> None:
        """Change the document length (e.g. per dataset: long documents); the fingerprint follows."""
        if self.max_position_embeddings and length > self.max_position_embeddings:
            raise ConfigError(f"document_length {length} exceeds the model's {self.max_position_embeddings} positions")
        self.model.document_length = length
        self._fingerprint = None

    @property
    def max_seq_length(self) -> int:
        """Document tokens (markers included), reported beside results like the dense encoder's."""
        return self.document_length

    @property
    def query_expansion(self) -> bool:
        return bool(self.model.do_query_expansion)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode_queries(["dimension probe"], desc="")[0].shape[1])
        return self._dim

    @property
    def unpadded_path(self) -> str | None:
        """The attention of the unpadded forward used for documents, or ``None`` (see ``DenseEncoder``)."""
        return unpadded_path(self.transformer_model, self.unpad)

    def _unpad_queries(self) -> bool:
        """Padded query positions are read back (not skipped) only with expansion tokens masked as keys."""
        return not self.query_expansion or bool(getattr(self.model, "attend_to_expansion_tokens", False))

    def fingerprint(self) -> str:
        """Weights and settings that change an embedding (not ``unpad``: same embeddings, caches reused)."""
        if self._fingerprint is None:
            settings = {
                "kind": self.kind,
                "query_length": self.query_length,
                "document_length": self.document_length,
                "query_expansion": self.query_expansion,
                "query_prompt": self.query_prompt,
                "document_prompt": self.document_prompt,
                "dtype": self.backend.dtype,
            }
            self._fingerprint = fingerprint_module(self.model, settings)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "fingerprint": self.fingerprint(),
            "model_type": self.model_type,
            "dim": self.dim,
            "query_length": self.query_length,
            "document_length": self.document_length,
            "max_seq_length": self.max_seq_length,
            "max_position_embeddings": self.max_position_embeddings,
            "query_expansion": self.query_expansion,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "similarity": "maxsim",
            "device": self.backend.device,
            "dtype": self.backend.dtype,
            "attn_implementation": self.backend.attn_implementation or "default",
            "unpadded": self.unpadded_path,
        }

    # -- encoding -------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], desc: str = "encode queries") -> list[np.ndarray]:
        """One ``float32 [tokens, dim]`` matrix per query (``query_length`` rows with expansion)."""
        return self._encode(texts, is_query=True, prompt=self.query_prompt, desc=desc)

    def encode_documents(self, texts: Sequence[str], desc: str = "encode documents") -> list[np.ndarray]:
        """One ``float32 [tokens, dim]`` matrix per document (padding and punctuation removed)."""
        return self._encode(texts, is_query=False, prompt=self.document_prompt, desc=desc)

    def _encode(self, texts: Sequence[str], *, is_query: bool, prompt: str | None, desc: str) -> list[np.ndarray]:
        n = len(texts)
        out: list[np.ndarray | None] = [None] * n
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        chunk = max(self.batch_size * 8, 1)
        fast = self.unpad and (not is_query or self._unpad_queries())
        with (
            tqdm(
                total=n, desc=desc, unit="text", disable=not self.show_progress or not desc or n == 0, leave=False
            ) as bar,
            unpadded(self.transformer_model, enabled=fast),
        ):
            for start in range(0, n, chunk):
                idx = order[start : start + chunk]
                mats = self.model.encode(
                    [texts[i] for i in idx],
                    prompt=prompt or None,
                    batch_size=self.batch_size,
                    is_query=is_query,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
                for i, m in zip(idx, mats, strict=True):
                    out[i] = np.asarray(m, dtype=np.float32)
                bar.update(len(idx))
        return out  # type: ignore[return-value]

    def count_truncated(self, texts: Sequence[str], *, documents: bool = True) -> int:
        """How many texts exceed the document (or query) length, counting the ``[D]``/``[Q]`` marker."""
        tokenizer = self.model.tokenizer
        prompt = (self.document_prompt if documents else self.query_prompt) or ""
        limit = self.document_length if documents else self.query_length
        count = 0
        for start in range(0, len(texts), 1024):
            batch = [prompt + t for t in texts[start : start + 1024]]
            ids = tokenizer(batch, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            count += sum(1 for x in ids if len(x) + 1 > limit)
        return count

    def save(self, path: str | Path) -> None:
        self.model.save(str(path))
