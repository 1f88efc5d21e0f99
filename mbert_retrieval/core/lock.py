"""One writer per output folder: ``with output_lock(folder): ...``.

The lock is a small JSON file beside the folder, ``<parent>/.<name>.lock`` (beside, not inside: an
index folder is replaced by a rename, which would carry a lock inside it away). It is created with
``O_CREAT | O_EXCL``, so of two runs started at once exactly one gets it, and holds the holder's
pid, host, process start time and command line. A second run is refused with
``OutputLockedError`` naming the holder. A lock left by a run that was killed (``SIGKILL``, power
loss) is stale when its host is this host and its pid is gone (or is another process now): it is
taken over with a warning. A lock from another host is never taken over; the message says which
file to remove once that job is known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mbert_retrieval.core.errors import OutputLockedError, OutputWriteError
from mbert_retrieval.core.io import WRITE_ERRNOS

log = logging.getLogger(__name__)

UNREADABLE_GRACE_SECONDS = 30.0  # a lock file still empty this long after creation was left by a killed run


def lock_path(folder: str | Path) -> Path:
    """Where the lock of ``folder`` lives: ``<parent>/.<name>.lock``."""
    folder = Path(folder).expanduser().absolute()
    return folder.parent / f".{folder.name}.lock"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), to tell a reused pid from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of stat, counted after "pid (comm)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def read_holder(path: str | Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file, or ``None`` when it is missing or not (yet) readable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_stale(holder: dict[str, Any] | None, path: Path) -> bool:
    """True when the holder is known to be gone: same host, and its pid is dead or reused."""
    if holder is None:  # empty or torn file: its writer died between create and write
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > UNREADABLE_GRACE_SECONDS
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if not _alive(pid):
        return True
    started = holder.get("start_time")
    return started is not None and _start_time(pid) not in (None, started)


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "a run that is starting (the lock file is not written yet)"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
        f"({str(holder.get('command') or '?')[:200]})"
    )


_HELD: dict[Path, int] = {}  # lock files this process holds -> nesting depth


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``folder`` for the ``with`` block; yields the lock file's path.

    Raises ``OutputLockedError`` when a live run holds it. Re-entrant within one process (quickstart
    or a sweep calling eval on a folder it already holds). The lock file is removed on exit, also on
    an exception or ``KeyboardInterrupt``; after ``SIGKILL`` it stays and is detected as stale.
    """
    path = lock_path(folder)
    if _HELD.get(path):
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise (OutputWriteError(path.parent, e) if e.errno in WRITE_ERRNOS else e) from e
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start_time": _start_time(os.getpid()),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "folder": str(Path(folder).expanduser().absolute()),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as e:
            if e.errno in WRITE_ERRNOS:  # a read-only or full file system: say so before any work
                raise OutputWriteError(path, e) from e
            if not isinstance(e, FileExistsError):
                raise
            holder = read_holder(path)
            if not is_stale(holder, path):
                raise OutputLockedError(
                    f"{folder} is being written by another run: {_describe(holder)}; wait for it to finish "
                    f"(or, if that run is gone, remove {path})"
                ) from None
            log.warning("%s: removing the stale lock of a run that is gone (%s)", folder, _describe(holder))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        try:
            os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        break
    else:  # pragma: no cover - three stale takeovers lost to other runs in a row
        raise OutputLockedError(f"{folder}: could not take the lock {path} (other runs keep taking it)")
    _HELD[path] = 1
    try:
        yield path
    finally:
        _HELD.pop(path, None)
        holder = read_holder(path)
        if holder is not None and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def output_lock_if_main(folder: str | Path, command: str | None = None) -> contextlib.AbstractContextManager[Any]:
    """``output_lock(folder)`` on rank 0 (or without ``torchrun``); nothing on the other ranks, which
    write no outputs of their own (or only ones rank 0 assigned them)."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return contextlib.nullcontext()
    return output_lock(folder, command)
