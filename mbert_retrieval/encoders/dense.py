"""Single-vector encoder: holds a sentence-transformers ``SentenceTransformer`` (never subclasses it).

Loads models saved by sentence-transformers 5.x (``sentence_transformers.models.*`` module paths, e.g. the
all-MiniLM-L6-v2 package's) and by 5.4+/6.x (``sentence_transformers.base.modules.*``) alike: both are
read by the installed sentence-transformers 6.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.encoders.backend import MODERNBERT_MAX_LENGTH, Backend, unpad_default, unpadded_path
from mbert_retrieval.encoders.held import HeldModel, count_longer, load_held
from mbert_retrieval.encoders.unpadded import unpadded

log = logging.getLogger(__name__)


class DenseEncoder(HeldModel):
    """Encode queries and documents into one vector each, with a sentence-transformers model.

    Args:
        model: a hub id (``answerdotai/ModernBERT-base``) or a local folder (a sentence-transformers
            model, or a plain transformers checkpoint, which gets mean pooling).
        max_seq_length: tokens per text; default the model's own (8192 for ModernBERT). Reported
            in ``describe()``; texts longer than it are counted by ``count_truncated``.
        query_prompt / document_prompt: text prepended to queries / documents. Default: the
            model's own ``"query"`` / ``"document"`` prompts if it has them, else none.
        normalize: L2-normalise embeddings (inner product = cosine). Default: on unless the
            model declares dot-product similarity.
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default a GPU when visible.
        attn_implementation: override the automatic choice (see ``encoders.backend``).
        trust_remote_code: allow the checkpoint to run its own Python code. Off by default.
        unpad: run ModernBERT through the unpadded forward (``encoders.unpadded``: packed tokens,
            real sliding-window attention; same embeddings within fp32 rounding). On by default (``None``: the
            process default, see ``backend.set_unpad_default``); ignored for other architectures.
    """

    kind = "dense"

    def __init__(
        self,
        model: str,
        *,
        max_seq_length: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        normalize: bool | None = None,
        batch_size: int = 32,
        device: str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        unpad: bool | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = model
        plan, self.model = load_held(
            model,
            lambda plan: SentenceTransformer(
                plan.source,
                device=plan.backend.device,
                trust_remote_code=trust_remote_code,
                model_kwargs=plan.model_kwargs or None,
            ),
            device=device,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        )
        self.model_type = plan.model_type
        self.backend: Backend = plan.backend

        self.max_position_embeddings = self._max_positions()
        if max_seq_length is not None:
            if max_seq_length < 1:
                raise ConfigError(f"max_seq_length must be positive, got {max_seq_length}")
            if self.max_position_embeddings and max_seq_length > self.max_position_embeddings:
                raise ConfigError(
                    f"max_seq_length {max_seq_length} exceeds the model's {self.max_position_embeddings} positions"
                )
            self.model.max_seq_length = max_seq_length
        elif self.model_type == "modernbert":
            usable = min(MODERNBERT_MAX_LENGTH, self.max_position_embeddings or MODERNBERT_MAX_LENGTH)
            if (self.model.max_seq_length or 0) < usable:
                log.warning(
                    "%s: this ModernBERT checkpoint is configured for max_seq_length %s although it has %d "
                    "positions; documents longer than that are truncated (pass max_seq_length to change it)",
                    model,
                    self.model.max_seq_length,
                    usable,
                )
        if self.model.max_seq_length is None:
            raise ConfigError(f"{model}: the model states no maximum length; pass max_seq_length")

        self.query_prompt = query_prompt if query_prompt is not None else self.model.prompts.get("query") or None
        if document_prompt is None:
            document_prompt = next(
                (self.model.prompts[k] for k in ("document", "passage", "corpus") if self.model.prompts.get(k)), None
            )
        self.document_prompt = document_prompt
        similarity = getattr(self.model, "similarity_fn_name", None) or "cosine"
        self.similarity = similarity
        self.normalize = (similarity == "cosine") if normalize is None else normalize
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.unpad = unpad_default(unpad)
        self._fingerprint: str | None = None

    # -- facts about the model ------------------------------------------------------------
    def _max_positions(self) -> int | None:
        config = getattr(self.transformer_model, "config", None)
        return getattr(config, "max_position_embeddings", None)

    @property
    def pooling(self) -> str | None:
        """The pooling of the sentence-transformers pipeline (``mean`` for a plain HF checkpoint)."""
        for module in self.model:
            mode = getattr(module, "pooling_mode", None)
            if mode is not None:
                return mode if isinstance(mode, str) else "+".join(mode)
        return None

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def unpadded_path(self) -> str | None:
        """The attention of the unpadded forward in use (``"sdpa"``, ``"flash_attn_varlen"``), or ``None``."""
        return unpadded_path(self.transformer_model, self.unpad)

    def _fingerprint_settings(self) -> dict[str, Any]:
        """The settings hashed with the weights (``HeldModel.fingerprint``)."""
        return {
            "max_seq_length": self.max_seq_length,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "normalize": self.normalize,
            "modules": [type(m).__name__ for m in self.model],
            "dtype": self.backend.dtype,
        }

    def _describe_own(self) -> dict[str, Any]:
        """What ``describe()`` records between the model's name and dim and its device and attention."""
        return {
            "max_seq_length": self.max_seq_length,
            "max_position_embeddings": self.max_position_embeddings,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "similarity": "cosine" if self.normalize else self.similarity,
        }

    # -- encoding -------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], desc: str = "encode queries") -> np.ndarray:
        """``float32 [n, dim]`` embeddings of queries (query prompt applied)."""
        return self._encode(texts, self.model.encode_query, self.query_prompt, desc)

    def encode_documents(self, texts: Sequence[str], desc: str = "encode documents") -> np.ndarray:
        """``float32 [n, dim]`` embeddings of documents (document prompt applied)."""
        return self._encode(texts, self.model.encode_document, self.document_prompt, desc)

    def _encode(self, texts: Sequence[str], fn: Any, prompt: str | None, desc: str) -> np.ndarray:
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does inside one call; chunks keep the bar moving.
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        chunk = max(self.batch_size * 8, 1)
        with (
            tqdm(total=n, desc=desc, unit="text", disable=not self.show_progress or n == 0, leave=False) as bar,
            unpadded(self.transformer_model, enabled=self.unpad),
        ):
            for start in range(0, n, chunk):
                idx = order[start : start + chunk]
                emb = fn(
                    [texts[i] for i in idx],
                    prompt=prompt or None,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=self.normalize,
                    show_progress_bar=False,
                )
                out[idx] = np.asarray(emb, dtype=np.float32)
                bar.update(len(idx))
        return out

    def count_truncated(self, texts: Sequence[str], *, documents: bool = True) -> int:
        """How many texts (with their prompt) exceed ``max_seq_length`` tokens and get cut."""
        prompt = (self.document_prompt if documents else self.query_prompt) or ""
        return count_longer(self.model.tokenizer, texts, prompt, self.max_seq_length)
