"""Multi-vector (ColBERT) encoder: holds a sentence-transformers ``MultiVectorEncoder`` (never subclasses it).

Reads every multi-vector checkpoint layout ``MultiVectorEncoder`` reads: sentence-transformers 6 saves,
PyLate checkpoints (``[Q] ``/``[D] `` prefixes, query expansion, query/document lengths and skiplist are
taken over; token embeddings bit-identical to ``pylate.models.ColBERT``, ``tests/parity/test_colbert_golden.py``),
and Stanford ColBERT (``HF_ColBERT``). A plain encoder (ModernBERT-base, BERT, or a single-vector
sentence-transformers model) is turned into a ColBERT the way PyLate does it: ``[Q] ``/``[D] `` added to
the vocabulary as marker tokens, a linear projection to ``embedding_size``, PyLate's punctuation
skiplist, all random weights seeded (train it before trusting scores). ``build_colbert`` is that
construction, shared with training.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.encoders.backend import Backend, unpad_default, unpadded_path
from mbert_retrieval.encoders.held import HeldModel, count_longer, load_held
from mbert_retrieval.encoders.unpadded import unpadded

log = logging.getLogger(__name__)

DEFAULT_QUERY_LENGTH = 32
DEFAULT_DOCUMENT_LENGTH = 180  # PyLate's default for a model that states none
DEFAULT_EMBEDDING_SIZE = 128
# PyLate's markers: added to the vocabulary of a plain encoder, prepended (as prompts) to every text.
MARKERS = {"query": "[Q] ", "document": "[D] "}
SKIPLIST = list(string.punctuation)  # PyLate's default: document tokens left out of the token vectors


def multivector_layout(source: str) -> str | None:
    """What kind of multi-vector checkpoint ``source`` is (``"sentence-transformers"``, ``"pylate"``,
    ``"stanford"``), or ``None`` for a plain encoder (a transformers model, or a single-vector
    sentence-transformers one). Reads the config files locally or from the hub cache."""
    from sentence_transformers.util import load_file_path

    def read(name: str) -> dict[str, Any]:
        try:
            path = load_file_path(source, name, local_files_only=not Path(source).exists() and _offline())
        except Exception:  # unreachable hub or a missing file: the loader says so clearly later
            path = None
        if path is None:
            return {}
        try:
            found = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return found if isinstance(found, dict) else {}

    st = read("config_sentence_transformers.json")
    if st.get("model_type") == "ColBERT" or "query_prefix" in st:
        return "pylate"
    if st.get("model_type") == "MultiVectorEncoder" or str(st.get("similarity_fn_name", "")).lower() in (
        "maxsim",
        "meanmaxsim",
    ):
        return "sentence-transformers"
    architectures = read("config.json").get("architectures") or []
    if "HF_ColBERT" in architectures:
        return "stanford"
    if any(str(a).endswith("ForRetrieval") for a in architectures):
        return "sentence-transformers"
    return None


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def build_colbert(
    source: str,
    *,
    query_length: int | None = None,
    document_length: int | None = None,
    query_expansion: bool | None = None,
    embedding_size: int | None = None,
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
) -> Any:
    """A ``MultiVectorEncoder`` for ``source``: the checkpoint as saved (lengths and expansion overridden
    where given), or, for a plain encoder, a new ColBERT on it (see the module docstring). Random
    weights come from ``seed``; torch's global random state is left as it was."""
    import torch
    from sentence_transformers import MultiVectorEncoder

    layout = multivector_layout(source)
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if layout is not None:
            if embedding_size is not None:
                log.warning("%s is a ColBERT checkpoint: it keeps its own projection (embedding_size ignored)", source)
            model = MultiVectorEncoder(
                source, device=device, trust_remote_code=trust_remote_code, model_kwargs=model_kwargs or None
            )
        else:
            model = _new_colbert(
                source,
                document_length=document_length or DEFAULT_DOCUMENT_LENGTH,
                embedding_size=embedding_size or DEFAULT_EMBEDDING_SIZE,
                device=device,
                model_kwargs=model_kwargs,
                trust_remote_code=trust_remote_code,
            )
            if query_expansion is None:
                query_expansion = True
            if query_length is None:
                query_length = DEFAULT_QUERY_LENGTH
    finally:
        torch.random.set_rng_state(rng_state)
    set_query_options(model, query_length=query_length, query_expansion=query_expansion)
    if document_length is not None:
        model[0].document_length = document_length
    elif model[0].document_length is None:
        model[0].document_length = min(DEFAULT_DOCUMENT_LENGTH, model[0].max_seq_length or DEFAULT_DOCUMENT_LENGTH)
    return model


def _new_colbert(
    source: str,
    *,
    document_length: int,
    embedding_size: int,
    device: str | None,
    model_kwargs: dict[str, Any] | None,
    trust_remote_code: bool,
) -> Any:
    """PyLate's ColBERT on a plain encoder, as sentence-transformers modules (in PyLate's order of random
    draws: projection first, then the marker embeddings, drawn around the mean of the vocabulary's)."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from torch import nn

    shared = {"trust_remote_code": trust_remote_code}
    transformer = Transformer(
        source,
        model_kwargs={**shared, **(model_kwargs or {})},
        processor_kwargs=shared,
        config_kwargs=shared,
        document_length=document_length,
    )
    dense = Dense(
        in_features=transformer.get_embedding_dimension(),
        out_features=embedding_size,
        bias=False,
        activation_function=nn.Identity(),
        module_input_name="token_embeddings",
    )
    tokenizer = transformer.tokenizer
    vocab = tokenizer.get_vocab()
    new = [m for m in MARKERS.values() if m not in vocab]
    if new:  # special tokens: never split, not normalised (so "[Q] " matches after lower-casing tokenizers too)
        tokenizer.add_special_tokens({"extra_special_tokens": new}, replace_extra_special_tokens=False)
        transformer.auto_model.resize_token_embeddings(len(tokenizer))
    modules = [transformer, dense, MultiVectorMask(skiplist_words=SKIPLIST), Normalize("token_embeddings")]
    return MultiVectorEncoder(modules=modules, prompts=dict(MARKERS), device=device, similarity_fn_name="maxsim")


def set_query_options(model: Any, *, query_length: int | None, query_expansion: bool | None) -> None:
    """Apply PyLate's query options to a ``MultiVectorEncoder``: with expansion, queries are padded with
    ``[MASK]`` to exactly ``query_length`` tokens (kept as key-masked positions, as PyLate does);
    without, ``query_length`` caps them. ``None`` keeps the model's setting."""
    transformer = model[0]
    expansion = transformer.query_expansion
    current = expansion["length"] if expansion else transformer.query_length
    length = query_length or current or DEFAULT_QUERY_LENGTH
    on = (expansion is not None) if query_expansion is None else query_expansion
    if on:
        attend = bool(expansion and expansion.get("attend"))
        token = expansion.get("token") if expansion else None
        transformer.query_length = None  # the expansion length is the cap
        transformer.query_expansion = {"strategy": "fixed", "attend": attend, "token": token, "length": length}
    else:
        transformer.query_expansion = None
        transformer.query_length = length


class ColBERTEncoder(HeldModel):
    """Encode queries and documents into one L2-normalised vector per token (a ColBERT model).

    Args:
        model: hub id or local folder: a multi-vector checkpoint (sentence-transformers 6, PyLate,
            Stanford ColBERT) or a plain transformers / single-vector encoder (see the module docstring).
        query_length: query tokens (default: the checkpoint's, else 32). With query expansion
            (on by default) queries are padded to this length with ``[MASK]`` tokens, which
            the model does not attend to but scores; in fp16 this is known to produce NaNs.
        document_length: document tokens (default: the checkpoint's, else 180 as in training).
            Evaluation on long documents should raise it (up to 8192 for ModernBERT).
        query_expansion: pad queries with ``[MASK]`` (ColBERT's query augmentation).
        embedding_size: projection size for a plain encoder (default 128); a checkpoint keeps its own.
        query_prompt / document_prompt: text put after the model's ``[Q] ``/``[D] `` marker.
        batch_size, device, attn_implementation, trust_remote_code: as for ``DenseEncoder``.
        seed: seeds the random projection and marker embeddings added to a plain encoder.
        unpad: run ModernBERT through the unpadded forward (``encoders.unpadded``) for documents and
            for queries without ``[MASK]`` expansion (whose padding is read back). On by default.
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
        if normalize is False:
            raise ConfigError("ColBERT token vectors are always L2-normalised (MaxSim is a sum of cosines)")
        if max_seq_length is not None and document_length is None:
            document_length = max_seq_length
        self.name = model
        plan, self.model = load_held(
            model,
            lambda plan: build_colbert(
                plan.source,
                query_length=query_length,
                document_length=document_length,
                query_expansion=query_expansion,
                embedding_size=embedding_size,
                device=plan.backend.device,
                model_kwargs=plan.model_kwargs or None,
                trust_remote_code=trust_remote_code,
                seed=seed,
            ),
            device=device,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            what=" as ColBERT",
            passthrough=(ConfigError,),
        )
        self.model_type = plan.model_type
        self.backend: Backend = plan.backend
        positions = getattr(getattr(self.transformer_model, "config", None), "max_position_embeddings", None)
        self.max_position_embeddings = positions
        for what, value in (("query_length", self.query_length), ("document_length", self.document_length)):
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
    def tokenizer(self) -> Any:
        return self.model[0].tokenizer

    @property
    def query_length(self) -> int:
        expansion = self.model[0].query_expansion
        return int(expansion["length"] if expansion else self.model[0].query_length or DEFAULT_QUERY_LENGTH)

    @property
    def document_length(self) -> int:
        return int(self.model[0].document_length or self.model[0].max_seq_length or DEFAULT_DOCUMENT_LENGTH)

    def set_document_length(self, length: int) -> None:
        """Change the document length (e.g. per dataset: long documents); the fingerprint follows."""
        if self.max_position_embeddings and length > self.max_position_embeddings:
            raise ConfigError(f"document_length {length} exceeds the model's {self.max_position_embeddings} positions")
        self.model[0].document_length = length
        self._fingerprint = None

    @property
    def max_seq_length(self) -> int:
        """Document tokens (markers included), reported beside results like the dense encoder's."""
        return self.document_length

    @property
    def query_expansion(self) -> bool:
        return self.model[0].query_expansion is not None

    @property
    def markers(self) -> dict[str, str]:
        """The model's own query / document prompts (``[Q] ``/``[D] `` for PyLate-style models)."""
        prompts = self.model.prompts or {}
        return {"query": prompts.get("query") or "", "document": prompts.get("document") or ""}

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
        """Expanded queries read their ``[MASK]`` padding back as query tokens: they keep the padded forward
        unless the expansion tokens are attended to (then they are real tokens of the sequence)."""
        expansion = self.model[0].query_expansion
        return expansion is None or bool(expansion.get("attend"))

    def _fingerprint_settings(self) -> dict[str, Any]:
        """The settings hashed with the weights (``HeldModel.fingerprint``; ``unpad`` is not one of them:
        same embeddings, caches reused)."""
        return {
            "kind": self.kind,
            "query_length": self.query_length,
            "document_length": self.document_length,
            "query_expansion": self.query_expansion,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "dtype": self.backend.dtype,
        }

    def _describe_own(self) -> dict[str, Any]:
        """What ``describe()`` records between the model's name and dim and its device and attention."""
        return {
            "query_length": self.query_length,
            "document_length": self.document_length,
            "max_seq_length": self.max_seq_length,
            "max_position_embeddings": self.max_position_embeddings,
            "query_expansion": self.query_expansion,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "similarity": "maxsim",
        }

    # -- encoding -------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], desc: str = "encode queries") -> list[np.ndarray]:
        """One ``float32 [tokens, dim]`` matrix per query (``query_length`` rows with expansion)."""
        return self._encode(texts, is_query=True, desc=desc)

    def encode_documents(self, texts: Sequence[str], desc: str = "encode documents") -> list[np.ndarray]:
        """One ``float32 [tokens, dim]`` matrix per document (padding and skiplist tokens removed)."""
        return self._encode(texts, is_query=False, desc=desc)

    def _prompt(self, is_query: bool) -> str:
        """The model's marker, then our prompt (PyLate put the marker token before any prompt text)."""
        side = "query" if is_query else "document"
        return self.markers[side] + ((self.query_prompt if is_query else self.document_prompt) or "")

    def _encode(self, texts: Sequence[str], *, is_query: bool, desc: str) -> list[np.ndarray]:
        n = len(texts)
        out: list[np.ndarray | None] = [None] * n
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        chunk = max(self.batch_size * 8, 1)
        fast = self.unpad and (not is_query or self._unpad_queries())
        fn = self.model.encode_query if is_query else self.model.encode_document
        with (
            tqdm(
                total=n, desc=desc, unit="text", disable=not self.show_progress or not desc or n == 0, leave=False
            ) as bar,
            unpadded(self.transformer_model, enabled=fast),
            _quiet_expansion_notice(),
        ):
            for start in range(0, n, chunk):
                idx = order[start : start + chunk]
                mats = fn(
                    [texts[i] for i in idx],
                    prompt=self._prompt(is_query),
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
                for i, m in zip(idx, mats, strict=True):
                    out[i] = np.asarray(m, dtype=np.float32)
                bar.update(len(idx))
        return out  # type: ignore[return-value]

    def count_truncated(self, texts: Sequence[str], *, documents: bool = True) -> int:
        """How many texts exceed the document (or query) length, counting the ``[D]``/``[Q]`` marker."""
        limit = self.document_length if documents else self.query_length
        return count_longer(self.tokenizer, texts, self._prompt(not documents), limit)


class _quiet_expansion_notice:
    """sentence-transformers warns on every batch that a query filled the whole expansion length (it was
    cut at ``query_length``, as PyLate always did silently); ``count_truncated`` reports that instead."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("sentence_transformers.base.modules.transformer")
        self._filter = _DropMessage("filled the entire query_expansion length")
        self._logger.addFilter(self._filter)

    def __exit__(self, *exc: object) -> None:
        self._logger.removeFilter(self._filter)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()
