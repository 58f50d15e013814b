"""LockFile across real processes: one holder at a time, and a dead holder never blocks the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcp_tts.engines.contract.lockfile import LockFile

pytestmark = pytest.mark.skipif(os.name == "nt", reason="these tests kill holders with POSIX signals")

TRY = """
import sys
from pathlib import Path
from mcp_tts.engines.contract.lockfile import LockFile
print(LockFile(Path(sys.argv[1])).acquire(timeout=float(sys.argv[2])), flush=True)
"""

# Holds the lock until its stdin closes; with "spawn", first starts a child that outlives it.
HOLD = """
import subprocess, sys
from pathlib import Path
from mcp_tts.engines.contract.lockfile import LockFile
lock = LockFile(Path(sys.argv[1]))
if not lock.acquire():
    print("busy", flush=True)
    sys.exit(1)
if sys.argv[2:] == ["spawn"]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
    print(child.pid, flush=True)
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def try_in_another_process(path: Path, timeout: float = 0.0) -> bool:
    out = subprocess.run([sys.executable, "-c", TRY, str(path), str(timeout)], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out in ("True", "False"), out
    return out == "True"


class Holder:
    """A process holding the lock until released or killed."""

    def __init__(self, path: Path, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = []
        while not self.lines or self.lines[-1] not in ("held", "busy", ""):
            self.lines.append(self.process.stdout.readline().strip())
        assert self.lines[-1] == "held", self.lines

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture
def lock_path(tmp_path) -> Path:
    return tmp_path / "service.lock"


@pytest.fixture
def holders():
    """Starts holder processes; kills whichever are left at the end of the test."""
    started: list[Holder] = []

    def start(*args) -> Holder:
        started.append(Holder(*args))
        return started[-1]

    yield start
    for holder in started:
        holder.close()


def test_acquire_and_release(lock_path):
    lock = LockFile(lock_path)
    assert not lock.held
    lock.release()  # releasing what is not held does nothing
    assert lock.acquire()
    assert lock.held and lock_path.exists()
    lock.release()
    assert not lock.held
    lock.release()
    assert lock.acquire()  # the same object can take it again
    lock.release()


def test_another_process_cannot_acquire_while_held_and_can_right_after_release(lock_path):
    lock = LockFile(lock_path)
    assert lock.acquire()
    assert try_in_another_process(lock_path) is False
    lock.release()
    assert try_in_another_process(lock_path) is True


def test_a_lock_held_in_another_process_is_refused_here_until_it_is_released(lock_path, holders):
    holder = holders(lock_path)
    lock = LockFile(lock_path)
    assert not lock.acquire()
    assert not lock.held
    holder.release()
    assert lock.acquire()
    lock.release()


def test_a_holder_killed_with_sigkill_frees_the_lock(lock_path, holders):
    holder = holders(lock_path)
    assert try_in_another_process(lock_path) is False
    holder.kill()
    assert holder.process.returncode == -signal.SIGKILL
    lock = LockFile(lock_path)
    assert lock.acquire()
    lock.release()


def test_a_child_of_the_holder_does_not_keep_the_lock_after_the_holder_dies(lock_path, holders):
    """A host spawned while its spawner held a lock must not inherit it: the fd is not inheritable."""
    holder = holders(lock_path, "spawn")
    child_pid = int(holder.lines[0])
    try:
        holder.kill()
        os.kill(child_pid, 0)  # the child still runs
        assert try_in_another_process(lock_path) is True
    finally:
        os.kill(child_pid, signal.SIGKILL)


def test_a_second_lock_object_in_the_same_process_is_refused_and_does_not_break_the_first(lock_path):
    first, second = LockFile(lock_path), LockFile(lock_path)
    assert first.acquire()
    assert not second.acquire()  # its failed attempt opens and closes its own descriptor
    assert first.held and not second.held
    assert try_in_another_process(lock_path) is False  # closing that descriptor did not drop the lock
    first.release()
    assert second.acquire()
    second.release()


def test_acquire_with_a_timeout_gives_up_after_about_that_long(lock_path, holders):
    holders(lock_path)
    lock = LockFile(lock_path)
    started = time.monotonic()
    assert lock.acquire(timeout=0.3) is False
    assert time.monotonic() - started >= 0.3
    assert not lock.held


def test_acquire_with_a_timeout_gets_the_lock_once_the_holder_lets_go(lock_path, holders):
    holder = holders(lock_path)
    assert try_in_another_process(lock_path, timeout=0.2) is False
    waiter = subprocess.Popen([sys.executable, "-c", TRY, str(lock_path), "30"], stdout=subprocess.PIPE,
                              text=True)
    time.sleep(0.2)
    holder.release()
    out, _ = waiter.communicate(timeout=60)
    assert out.strip() == "True"


def test_acquire_in_a_missing_folder_is_an_error_not_a_false(tmp_path):
    with pytest.raises(FileNotFoundError):
        LockFile(tmp_path / "missing" / "x.lock").acquire()


def test_holder_names_the_holding_process(lock_path, holders):
    from mcp_tts.engines.contract.lockfile import holder

    assert holder(lock_path) is None
    held = holders(lock_path)
    found = holder(lock_path)
    assert found is not None and found.pid == held.process.pid and "LockFile" in found.command
    held.release()
    assert holder(lock_path) is None


def test_holder_without_a_kernel_lock_table_trusts_a_written_pid_only_while_the_lock_is_held(lock_path, holders,
                                                                                                monkeypatch):
    """Where there is no /proc/locks, the pid the holder wrote; a crashed holder's pid (its lock gone) is not
    taken for a holder, whatever process has that pid now."""
    from mcp_tts.engines.contract import lockfile

    monkeypatch.setattr(lockfile, "_kernel_holder", lambda inode, device: lockfile._NO_TABLE)
    held = holders(lock_path)
    assert lockfile.holder(lock_path).pid == held.process.pid
    held.kill()  # its pid stays written in the file
    assert lock_path.read_text().strip() == str(held.process.pid)
    lock_path.write_text(f"{os.getpid()}\n")  # as if that pid were now some live process
    assert lockfile.holder(lock_path) is None
