"""Download BEIR datasets by name (the official zips), atomically.

A download goes to a ``.part`` file, is unpacked into a temporary folder beside the target, checked,
and renamed into place: an interrupted download never leaves a folder that looks complete.
Tests exercise this with ``file://`` URLs; the default URL is the BEIR project's public host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from mbert_retrieval.core.errors import DataError, MbertRetrievalError

log = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
"""Base URL of the official BEIR zips (``<base>/<name>.zip``); override with MBERT_RETRIEVAL_BEIR_URL."""


def beir_url(name: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get("MBERT_RETRIEVAL_BEIR_URL") or BEIR_URL
    return f"{base.rstrip('/')}/{name}.zip"


def _fetch(url: str, dest: Path, progress: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}", disable=not progress
            ) as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise MbertRetrievalError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None


def _safe_extract(archive: Path, into: Path) -> None:
    root = into.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (into / member).resolve()
            if root != target and root not in target.parents:
                raise DataError(archive, f"member {member!r} would be written outside the target folder")
        zf.extractall(into)


def download_beir(name: str, data_dir: str | Path, *, base_url: str | None = None, progress: bool = True) -> Path:
    """Fetch ``<base>/<name>.zip`` and unpack it to ``data_dir/name``; return that folder.

    An existing ``data_dir/name`` is returned untouched.
    """
    data_dir = Path(data_dir)
    target = data_dir / name
    if target.is_dir():
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    url = beir_url(name, base_url)
    log.info("downloading %s to %s", url, target)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.download-", dir=data_dir))
    try:
        archive = work / f"{name}.zip"
        _fetch(url, archive, progress)
        try:
            _safe_extract(archive, work / "unpacked")
        except zipfile.BadZipFile:
            raise DataError(archive, f"downloaded file from {url} is not a zip archive") from None
        unpacked = work / "unpacked" / name
        if not unpacked.is_dir():
            raise DataError(archive, f"the archive holds no folder {name!r}")
        os.replace(unpacked, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(work)
    return target
