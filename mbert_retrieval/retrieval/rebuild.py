"""The encoder that built an index, rebuilt from its manifest and checked against it (read side:
``search``, ``index add``, ``eval --index-dir``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mbert_retrieval.config import EncoderConfig
from mbert_retrieval.core.checkpoint import check_checkpoint
from mbert_retrieval.core.errors import ConfigError
from mbert_retrieval.encoders import encoder_from_config
from mbert_retrieval.indexes.manifest import MANIFEST_FILE, check_encoder


def encoder_from_manifest(
    manifest: dict[str, Any],
    where: str | Path,
    *,
    model: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    trust_remote_code: bool = False,
) -> Any:
    """The encoder that built an index (or ``model`` with the recorded settings), checked against it.

    Refused (``ConfigError``) when its dimension or fingerprint differs from the manifest's. A
    manifest is data, possibly from someone else: its ``trust_remote_code`` is never honoured on its
    own; the caller must pass ``trust_remote_code`` (the user's ``--trust-remote-code``).
    """
    record = dict(manifest.get("encoder_load") or {})
    built = manifest.get("encoder") or {}
    if not record and not model and not built.get("name"):
        raise ConfigError(f"{where}: the manifest records no encoder settings; pass --model")
    record.setdefault("model", built.get("name"))
    recorded = str(record.get("model") or "")
    if model is None and Path(recorded).is_absolute() and not Path(recorded).exists():
        raise ConfigError(
            f"{where}: the model recorded in {MANIFEST_FILE} ({recorded}) does not exist any more; "
            "pass --model PATH to a copy of it (it is checked against the index)"
        )
    if record.get("trust_remote_code") and not trust_remote_code:
        raise ConfigError(
            f"{where}: the index was built with --trust-remote-code (the model runs its own code); "
            "pass --trust-remote-code to load it, only if you trust that model"
        )
    check_checkpoint(model or record["model"], trust_remote_code=trust_remote_code)
    if built.get("kind") == "colbert":  # a multi-vector index (PLAID, Voyager) built by `eval`
        from mbert_retrieval.encoders import load_encoder

        colbert = load_encoder(
            model or record["model"],
            "colbert",
            batch_size=batch_size or 32,
            query_length=built.get("query_length"),
            document_length=built.get("document_length"),
            query_expansion=built.get("query_expansion"),
            query_prompt=built.get("query_prompt"),
            document_prompt=built.get("document_prompt"),
            device=device,
            trust_remote_code=trust_remote_code,
            show_progress=progress,
        )
        check_encoder(manifest, colbert.describe(), where)
        return colbert
    for key in ("max_seq_length", "query_prompt", "document_prompt", "normalize"):
        record.setdefault(key, built.get(key))
    cfg = EncoderConfig(
        model=model or record["model"],
        batch_size=batch_size or record.get("batch_size") or 32,
        max_seq_length=record.get("max_seq_length"),
        query_prompt=record.get("query_prompt"),
        document_prompt=record.get("document_prompt"),
        normalize=record.get("normalize"),
        device=device,
        trust_remote_code=trust_remote_code,
    )
    encoder = encoder_from_config(cfg, progress=progress)
    check_encoder(manifest, encoder.describe(), where)
    return encoder
