"""lock.output_lock: one writer per output folder, holders named, stale locks of killed runs taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mbert_retrieval.core.errors import OutputLockedError
from mbert_retrieval.core.lock import UNREADABLE_GRACE_SECONDS, lock_path, output_lock, read_holder


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_a_sibling_file_naming_its_holder_and_removed_after(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    with output_lock(out, command="index build --out idx") as path:
        assert path == tmp_path / ".idx.lock" == lock_path(out)
        holder = read_holder(path)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["command"] == "index build --out idx" and holder["folder"] == str(out)
        with output_lock(out):  # re-entrant in one process (quickstart -> eval on the folder it holds)
            pass
        assert path.is_file()  # the inner exit did not release the outer holder's lock
    assert not path.exists()


def test_another_live_process_holding_the_lock_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = "import time; from mbert_retrieval.core.lock import output_lock\n"
    code += f"with output_lock({str(out)!r}, 'eval (other)'):\n"
    code += "    print('held', flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(
                OutputLockedError, match=rf"out is being written by another run: pid {proc.pid} on .*eval \(other\)"
            ),
            output_lock(out),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()
    with output_lock(out):  # SIGKILLed holder: its lock is stale now
        pass


def test_lock_is_released_on_error_and_interrupt(tmp_path: Path) -> None:
    for exc in (ValueError, KeyboardInterrupt):
        with pytest.raises(exc), output_lock(tmp_path / "out"):
            raise exc()
        assert not lock_path(tmp_path / "out").exists()


def write_lock(folder: Path, **holder) -> Path:
    path = lock_path(folder)
    path.write_text(json.dumps(holder))
    return path


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    write_lock(out, pid=dead_pid(), host=socket.gethostname(), started="earlier", command="killed run")
    with output_lock(out) as path:
        assert read_holder(path)["pid"] == os.getpid()
    assert "removing the stale lock of a run that is gone" in caplog.text and "killed run" in caplog.text


def test_reused_pid_is_stale_but_a_live_holder_is_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    parent = os.getppid()  # alive; a recorded start time that differs means the pid was reused
    write_lock(out, pid=parent, host=socket.gethostname(), start_time="1", command="old")
    with output_lock(out):
        pass
    write_lock(out, pid=parent, host=socket.gethostname(), command="live run")  # no start time: trust the pid
    with pytest.raises(OutputLockedError, match="live run"), output_lock(out):
        pass


def test_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_lock(out, pid=dead_pid(), host="some-other-node", started="t", command="train on node 2")
    with (
        pytest.raises(OutputLockedError, match=r"some-other-node .*train on node 2.*if that run is gone, remove"),
        output_lock(out),
    ):
        pass
    assert path.is_file()


def test_empty_lock_file_is_a_starting_run_then_stale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = lock_path(out)
    path.write_text("")
    with pytest.raises(OutputLockedError, match="a run that is starting"), output_lock(out):
        pass
    old = time.time() - UNREADABLE_GRACE_SECONDS - 5
    os.utime(path, (old, old))
    with output_lock(out):
        pass


def test_two_processes_racing_for_one_folder(tmp_path: Path) -> None:
    """Of 6 processes started together, exactly one holds the lock; the others are refused."""
    out = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from mbert_retrieval.core.lock import output_lock
        from mbert_retrieval.core.errors import OutputLockedError
        print("ready", flush=True)
        while not os.path.exists({str(tmp_path / "go")!r}):
            time.sleep(0.01)
        try:
            with output_lock({str(out)!r}):
                time.sleep(2.0)
            print("held")
        except OutputLockedError as e:
            print("refused", e)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:  # all imported and waiting: then start them together
        assert p.stdout.readline().strip() == "ready"
    (tmp_path / "go").touch()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(o.startswith("held") for o in outputs) == 1, outputs
    assert sum(o.startswith("refused") for o in outputs) == 5, outputs
    assert not lock_path(out).exists()
