"""Atomic writes: every output is written to a temporary file beside its target, then renamed; a
folder (an index, a trained model, the quickstart's outputs) is built in a temporary sibling and renamed
into place (``staging_dir``).

A reader never sees a half-written file or folder: either the old content or the new, complete one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import OutputExistsError, OutputWriteError

# errors of the place written to (not of the program): reported as one line, naming the file
log = logging.getLogger(__name__)

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``.

    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise _write_error(target, e) from e
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise OutputWriteError(target, e) from e
        raise


def _write_error(target: Path, e: OSError) -> BaseException:
    return OutputWriteError(target, e) if e.errno in WRITE_ERRNOS else e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``target`` atomically."""
    write_text(target, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_lines(target: str | Path, lines: Iterator[str] | list[str]) -> None:
    """Write lines (each without its newline) to ``target`` atomically, streaming."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def check_folder_target(target: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work, an output folder path that names an existing file (one line, naming it)."""
    path = Path(target)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder; choose another {option}")
    return path


def check_file_target(target: str | Path, *, overwrite: bool, option: str = "--out") -> Path:
    """Refuse, before any work, an output file path that names a folder, or an existing file without
    ``overwrite``."""
    path = Path(target)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; {option} names the file to write (e.g. {path / 'run.trec'})")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def removed_on_failure(target: Path, *, unless: Path) -> Iterator[None]:
    """On an exception (Ctrl-C included), remove ``target`` if ``unless`` does not exist: a settings
    file written at the start of a run that then produced nothing does not look like an output."""
    try:
        yield
    except BaseException:
        if not unless.exists():
            with contextlib.suppress(OSError):
                target.unlink()
        raise


# --------------------------------------------------------------------------------------------
# Atomic folders: built in a temporary sibling, renamed into place, the old one removed only afterwards


def _backup_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.previous"


def recover_interrupted_swap(out: Path, marker: str | None = None) -> None:
    """Put back a folder moved aside by a swap that was killed between its two renames (only one that
    holds ``marker``, when given: an index's ``manifest.json``)."""
    backup = _backup_dir(out)
    if not out.exists() and backup.is_dir() and (marker is None or (backup / marker).is_file()):
        log.warning("%s: restoring it from %s (an update was interrupted)", out, backup)
        os.rename(backup, out)


def remove_stale_staging(out: Path) -> None:
    """Remove temporary copies (``.OUT.tmp-PID``) left by killed runs; called with the output lock held."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        if stale.is_dir():
            log.warning("%s: removing %s, left by an interrupted run", out, stale.name)
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh temporary sibling of ``out``; renamed onto ``out`` on success, removed on failure."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        raise (OutputWriteError(tmp, e) if e.errno in WRITE_ERRNOS else e) from e
    try:
        yield tmp
        try:
            swap_into_place(tmp, out)
        except OSError as e:
            raise (OutputWriteError(out, e) if e.errno in WRITE_ERRNOS else e) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the complete folder ``tmp`` onto ``out``; the old ``out`` is removed only afterwards."""
    backup = _backup_dir(out)
    if backup.exists():
        shutil.rmtree(backup)
    if out.exists():
        os.rename(out, backup)
    try:
        os.rename(tmp, out)
    except BaseException:
        if backup.exists() and not out.exists():
            os.rename(backup, out)
        raise
    with contextlib.suppress(OSError):  # make the renames durable
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    shutil.rmtree(backup, ignore_errors=True)
