"""``manifest.json`` of a built index: what it is, what built it, and a guard against misuse.

Written last (atomically) when an index is saved, so a folder without one is an unfinished build.
``check_encoder`` refuses to search an index with an encoder other than the one that built it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import ConfigError, DataError
from mbert_retrieval.core.io import write_json

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def write_manifest(path: str | Path, fields: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    """Write ``path/manifest.json``: the index's own ``fields`` plus caller ``meta`` (encoder, versions)."""
    manifest = {"format": FORMAT_VERSION, **fields, **(meta or {})}
    manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_json(Path(path) / MANIFEST_FILE, manifest)


def read_manifest(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read and sanity-check ``path/manifest.json``; one-line errors for missing or edited files."""
    file = Path(path) / MANIFEST_FILE
    if not Path(path).is_dir():
        raise DataError(path, "index folder not found")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(file, "missing: not an index folder, or an unfinished build") from None
    except json.JSONDecodeError as e:
        raise DataError(file, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(manifest, dict):
        raise DataError(file, "expected a JSON object")
    for key in ("kind", "spec", "dim", "n_docs"):
        if key not in manifest:
            raise DataError(file, "missing", field=key)
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise DataError(file, "expected an object of file names", field="files")
    for key, name in files.items():
        if not _plain_name(name):
            raise DataError(file, f"{name!r} is not a file name inside the index folder", field=f"files.{key}")
    if kind is not None and manifest["kind"] != kind:
        raise DataError(file, f"is a {manifest['kind']!r} index, not {kind!r}", field="kind")
    return manifest


def _plain_name(name: object) -> bool:
    """A file name with no folder part (no ``/``, ``\\``, ``..``, absolute path or drive): it stays in its folder."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def check_encoder(manifest: dict[str, Any], encoder: dict[str, Any], where: str | Path) -> None:
    """Refuse an encoder whose identity (fingerprint) or dimension differs from the index's."""
    built = manifest.get("encoder") or {}
    if manifest.get("dim") != encoder.get("dim"):
        raise ConfigError(
            f"{where}: index holds {manifest.get('dim')}-dim vectors from {built.get('name', '?')}; "
            f"the encoder {encoder.get('name')} gives {encoder.get('dim')}-dim vectors"
        )
    if built.get("fingerprint") and built.get("fingerprint") != encoder.get("fingerprint"):
        raise ConfigError(
            f"{where}: index was built with encoder {built.get('name')} (fingerprint {built.get('fingerprint')}); "
            f"{encoder.get('name')} (fingerprint {encoder.get('fingerprint')}) differs in weights or settings"
        )
