"""Run-time choices of device, dtype and attention implementation. The one module that asks torch,
transformers and flash-attn what this machine can do.

ModernBERT gets ``flash_attention_2`` (with bf16) when flash-attn imports and a CUDA GPU is
present, else ``sdpa`` in fp32; other architectures keep transformers' own default.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODERNBERT_MAX_LENGTH = 8192
_QUIET: bool | None = None
_UNPAD = True


def set_unpad_default(enabled: bool) -> None:
    """The unpadded ModernBERT forward for encoders built without an explicit ``unpad`` (CLI ``--no-unpad``)."""
    global _UNPAD
    _UNPAD = enabled


def unpad_default(unpad: bool | None = None) -> bool:
    """``unpad`` when given, else the process default (on unless ``set_unpad_default(False)``)."""
    return _UNPAD if unpad is None else unpad


def set_quiet(quiet: bool | None = True) -> None:
    """transformers' load reports and weight-loading progress bars. ``True`` (the CLI without ``-v``):
    silenced from the first model load on, for the rest of the process. ``False``: always shown.
    ``None`` (the default, the Python API): silenced while our encoders load a model, transformers'
    settings restored afterwards; shown when the ``mbert_retrieval`` logger is at DEBUG (the CLI's ``-v``).
    Our own warnings are never silenced."""
    global _QUIET
    _QUIET = quiet


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Around a model load: transformers' load report and progress bars silenced as ``set_quiet`` says
    (transformers resets its logger level on import, hence here and not once)."""
    quiet = _QUIET if _QUIET is not None else not logging.getLogger("mbert_retrieval").isEnabledFor(logging.DEBUG)
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if _QUIET is None:  # the Python API leaves transformers as it found it
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()


@dataclass(frozen=True)
class Backend:
    device: str
    attn_implementation: str | None  # None: the architecture's own default
    dtype: str  # "float32" or "bfloat16"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device in (None, "auto"):
        return "cuda" if cuda_available() else "cpu"
    return device


def model_type(name_or_path: str) -> str | None:
    """The ``model_type`` of a checkpoint's transformer (``"modernbert"``, ``"bert"``, ...).

    Reads ``config.json`` of a local folder directly; for a hub id asks transformers (which uses
    its cache and the network). ``None`` when it cannot be told.
    """
    path = Path(name_or_path)
    if path.is_dir():
        config = path / "config.json"
        if config.is_file():
            try:
                return json.loads(config.read_text(encoding="utf-8")).get("model_type")
            except (json.JSONDecodeError, OSError):
                return None
        return None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name_or_path).model_type
    except Exception as e:  # unreachable hub, unknown id: the model loader will say it clearly
        log.debug("could not read the config of %s: %s", name_or_path, e)
        return None


def choose_backend(
    model_kind: str | None, device: str | None = None, attn_implementation: str | None = None
) -> Backend:
    """Pick device, attention implementation and dtype for an architecture on this machine."""
    dev = resolve_device(device)
    if attn_implementation is not None:
        dtype = "bfloat16" if attn_implementation.startswith("flash_attention") else "float32"
        return Backend(dev, attn_implementation, dtype)
    if model_kind == "modernbert":
        if dev.startswith("cuda") and flash_attn_available():
            return Backend(dev, "flash_attention_2", "bfloat16")
        return Backend(dev, "sdpa", "float32")
    return Backend(dev, None, "float32")


def unpadded_path(model: Any, enabled: bool = True) -> str | None:
    """Attention the unpadded forward (``encoders.unpadded``) uses for ``model``: ``"flash_attn_varlen"``
    (CUDA with flash-attn) or ``"sdpa"``; ``None`` when switched off or ``model`` is not a
    ``ModernBertModel`` (then transformers' padded forward runs)."""
    if not enabled or model is None:
        return None
    from mbert_retrieval.encoders.unpadded import UnpaddedModernBert, is_modernbert

    if not is_modernbert(model):
        return None
    return UnpaddedModernBert(model).attention_path()


def planned_paths(device: str | None = None) -> dict[str, dict[str, str]]:
    """What each model kind runs on this machine (for ``mbert-retrieval doctor``), without loading a model."""
    dev = resolve_device(device)
    modern = choose_backend("modernbert", dev)
    other = choose_backend(None, dev)
    flash = dev.startswith("cuda") and flash_attn_available()
    fast = "flash_attn_varlen (cu_seqlens, window_size)" if flash else "sdpa per sequence + blocked sliding window"
    return {
        "modernbert": {
            "device": dev,
            "dtype": modern.dtype,
            "padded attention (unpad off, training)": modern.attn_implementation or "default",
            "unpadded inference (default)": fast,
        },
        "other (bert, ...)": {
            "device": dev,
            "dtype": other.dtype,
            "padded attention": other.attn_implementation or "transformers default (sdpa)",
            "unpadded inference (default)": "not available: padded batches sorted by length",
        },
    }


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# sentence-transformers 5.4 renamed the Transformer module's attribute ``auto_model`` to ``model``, so the
# same weights have the state_dict name ``0.model.embeddings...`` where 5.3 and PyLate said
# ``0.auto_model.embeddings...``. Names are hashed in the old spelling: a model keeps the fingerprint it
# had before the move to sentence-transformers 6, and so do the embedding caches and the indices built
# with it (tests/parity/test_colbert_golden.py checks one recorded on the old stack).
_RENAMED_TRANSFORMER = re.compile(r"^(\d+)\.model\.")


def fingerprint_module(module: Any, settings: dict[str, Any]) -> str:
    """blake2b over ``settings`` (JSON) and every tensor of ``module.state_dict()``: it changes
    whenever an embedding could change."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in module.state_dict().items():
        name = _RENAMED_TRANSFORMER.sub(r"\1.auto_model.", name)
        h.update(name.encode())
        t = tensor.detach().to("cpu").contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else is meant as a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


@dataclass(frozen=True)
class LoadPlan:
    """How to load a checkpoint: where from, what it is, on which backend, with which model kwargs."""

    source: str  # an existing local path (expanded) or the hub id as given
    model_type: str | None
    backend: Backend
    model_kwargs: dict[str, Any]


def plan_load(model: str, device: str | None = None, attn_implementation: str | None = None) -> LoadPlan:
    """Check a local path exists, read the architecture, and pick device, dtype and attention for it."""
    from mbert_retrieval.core.errors import ConfigError

    local = Path(model).expanduser()
    if _looks_like_path(model) and not local.exists():
        raise ConfigError(f"model path does not exist: {model}")
    kind = model_type(model)
    backend = choose_backend(kind, device, attn_implementation)
    kwargs: dict[str, Any] = {}
    if backend.attn_implementation is not None:
        kwargs["attn_implementation"] = backend.attn_implementation
    if backend.dtype != "float32":
        kwargs["dtype"] = torch_dtype(backend.dtype)
    return LoadPlan(str(local) if local.exists() else model, kind, backend, kwargs)
