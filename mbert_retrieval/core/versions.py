"""Versions of the libraries that shape a result, recorded in every results and manifest file."""

from __future__ import annotations

import platform
from importlib import metadata

_PACKAGES = (
    "mbert-retrieval",
    "torch",
    "transformers",
    "sentence-transformers",
    "fast-plaid",
    "voyager",
    "faiss-cpu",
    "faiss-gpu",
    "numpy",
)


def versions() -> dict[str, str]:
    """``{package: version}`` for the installed packages that matter, plus Python."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
