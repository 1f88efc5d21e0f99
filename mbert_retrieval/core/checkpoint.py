"""Refuse a local checkpoint that would run its own code or unpickle its weights, before loading it.

sentence-transformers imports the class named by each ``modules.json`` ``type`` and, for a local
folder, runs a ``.py`` file of the checkpoint to find it, even without ``trust_remote_code``
(``SentenceTransformer._load_module_class_from_ref``, 5.3); a ``Dense`` module's ``config.json``
names an ``activation_function`` that is imported and called. Weights in ``pytorch_model.bin``,
``*.pt``/``*.pth`` are pickles: ``torch.load`` restricts them to tensors (``weights_only``, the
default since torch 2.6), but safetensors cannot hold code at all. So, for a local folder:

- module types outside ``sentence_transformers.`` / ``pylate.`` and activation functions outside
  ``torch.nn.`` are refused unless ``trust_remote_code``;
- a folder whose weights are only pickle files is refused unless pickles are allowed
  (``allow_pickle=True``, or ``MBERT_RETRIEVAL_ALLOW_PICKLE=1`` in the environment).

Hub ids are not inspected here (their files are not local until downloaded).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mbert_retrieval.core.errors import ConfigError

TRUSTED_MODULE_PREFIXES = ("sentence_transformers.", "pylate.")
TRUSTED_ACTIVATION_PREFIX = "torch.nn."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ALLOW_PICKLE_ENV = "MBERT_RETRIEVAL_ALLOW_PICKLE"
HINT_CODE = "pass --trust-remote-code only if you trust this checkpoint"


def pickle_allowed(allow_pickle: bool | None = None) -> bool:
    """``allow_pickle`` when given, else ``MBERT_RETRIEVAL_ALLOW_PICKLE`` is ``1``/``true``/``yes``."""
    if allow_pickle is not None:
        return allow_pickle
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable: the loader reports it with its own message


def _module_folders(folder: Path) -> list[Path]:
    """The checkpoint folder and its module sub-folders (from ``modules.json``, kept inside it)."""
    folders = [folder]
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list):
        for m in modules:
            sub = (folder / str(m.get("path") or "")).resolve() if isinstance(m, dict) else None
            if sub is not None and sub != folder.resolve() and sub.is_relative_to(folder.resolve()) and sub.is_dir():
                folders.append(sub)
    return folders


def check_checkpoint(model: str | Path, *, trust_remote_code: bool = False, allow_pickle: bool | None = None) -> None:
    """Raise ``ConfigError`` if the local checkpoint ``model`` would run code or unpickle weights
    without the user's consent (see the module doc). A hub id or a missing path passes unchecked."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return
    if not trust_remote_code:
        modules = _read_json(folder / "modules.json")
        for i, m in enumerate(modules if isinstance(modules, list) else []):
            kind = str(m.get("type", "")) if isinstance(m, dict) else ""
            if not kind.startswith(TRUSTED_MODULE_PREFIXES):
                raise ConfigError(
                    f"{folder / 'modules.json'}: module {i} has type {kind!r}, code from outside "
                    f"sentence-transformers and PyLate that loading would import and run; {HINT_CODE}"
                )
        for sub in _module_folders(folder)[1:]:
            cfg = _read_json(sub / "config.json")
            act = cfg.get("activation_function") if isinstance(cfg, dict) else None
            if act is not None and not str(act).startswith(TRUSTED_ACTIVATION_PREFIX):
                raise ConfigError(
                    f"{sub / 'config.json'}: activation_function {act!r} is not a torch.nn class; "
                    f"loading would import and call it; {HINT_CODE}"
                )
    if pickle_allowed(allow_pickle):
        return
    for sub in _module_folders(folder):
        files = [p for p in sub.iterdir() if p.is_file()]
        if any(p.name.endswith(".safetensors") for p in files):
            continue
        pickles = sorted(p.name for p in files if p.name.endswith(PICKLE_SUFFIXES) and p.name != "training_args.bin")
        if pickles:
            raise ConfigError(
                f"{sub / pickles[0]}: weights stored as a pickle and no .safetensors beside them; loading a pickle "
                f"can run code from a crafted file: convert the checkpoint to safetensors, or pass --allow-pickle "
                f"(mbert-retrieval --allow-pickle COMMAND ..., or {ALLOW_PICKLE_ENV}=1) if you trust it"
            )
