"""The server's side of the engine-host boundary: find, start and talk to the user's hosts.

A host is shared by every server of the user. The first server that needs one starts it, under a
spawn lock, so that two servers starting together end up with one host; the host's own service
lock makes a second host leave at once. A host that has died is started again on the next request.

Supervision: a host answers Health from its event loop whatever its engine is doing (synthesis and
model loads run in a worker thread), so a host that gives no answer within HEALTH_DEADLINE is frozen
(stopped, or its loop wedged). While requests wait on a host, it is asked whenever it has been silent
for HEALTH_INTERVAL; a frozen one is killed, its waiting requests fail naming it and its log, and the
next request starts a new host. A host found frozen when connecting (no Welcome in time) is killed too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import platformdirs
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import engines
from .config import APP
from .engines.contract import address
from .engines.contract.address import HOST_MODULE, is_host_command
from .engines.contract.lockfile import HELD_ELSEWHERE, LockFile, holder, process_command
from .engines.contract.protocol import (
    HEADER,
    PROTOCOL_VERSION,
    SETTINGS_DETAIL,
    Failed,
    Health,
    HealthReport,
    Hello,
    Message,
    ProtocolError,
    Shutdown,
    Welcome,
    decode,
    encode,
    frame_sizes,
    host_settings,
)
from .errors import HostError

log = logging.getLogger("mcp_tts.hosts")

ENGINES_DIR = Path(engines.__file__).resolve().parent
SPAWN_TIMEOUT = 30.0
# Seconds a host has to answer Health (or Hello), however busy its engine: past it, the host is frozen.
HEALTH_DEADLINE = 4.0
HEALTH_INTERVAL = 0.5  # while requests wait on a host, it is asked after this long without a word from it
STATUS_DEADLINE = 0.5  # `mcp-tts hosts`: a host silent this long is listed as not answering
SERVER_SERVICES = ("builtin", "speaker")  # hosts that run in the server's own interpreter
DEFAULT_IDLE_TIMEOUT = 600.0  # a host's, where the server names none for its service
STOP_GRACE = 1.5  # `mcp-tts hosts stop`: seconds after Shutdown before SIGTERM, and after SIGTERM before SIGKILL

# engines/launch.py runs the host in any interpreter with only the engine side importable: a family
# venv must not see the server's site-packages, nor the server package itself.
LAUNCHER = ENGINES_DIR / "launch.py"
Frame = tuple[Message, bytes]


class HostLost(HostError):
    pass


class NotAnswering(HostLost):
    """A host that is alive (its socket takes connections) but does not answer in time."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


@dataclass
class Reply:
    """The replies to one request, in order; ends with HostLost if the host goes away."""

    id: str
    receive: MemoryObjectReceiveStream[Frame]
    conn: HostConnection

    async def next(self) -> Frame:
        try:
            return await self.receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise HostLost(self.conn.lost_message()) from None

    def close(self) -> None:
        self.conn.forget(self.id)


class HostConnection:
    """One socket to one host, carrying many requests at once, told apart by their ids."""

    def __init__(self, service: str, stream: ByteStream, reader: BufferedByteReceiveStream, welcome: Welcome,
                 log_file: Path) -> None:
        self.service = service
        self._reader = reader
        self.pid = welcome.pid
        self.started_at = welcome.started_at
        self.log = log_file
        self._stream = stream
        self._send_lock = anyio.Lock()
        self._routes: dict[str, MemoryObjectSendStream[Frame]] = {}
        self._waiters: list[MemoryObjectSendStream[Frame]] = []  # for replies without an id
        self.alive = True
        self.last_heard = time.monotonic()  # when the host last sent anything: proof its event loop runs
        self.reason = "went away mid-request"  # what became of it, once lost
        self.stale: str | None = None  # set: it runs under other settings than this server's, and was busy
        self.started_here = False  # this server started it (under its own settings)
        self.settled = False  # Hosts.get has compared its settings with ours: others may use it without the lock

    def lost_message(self) -> str:
        return (f"the {self.service} engine host (pid {self.pid}) {self.reason}; its log is {self.log}. "
                f"The next request starts a new host.")

    async def send(self, message: Message, payload: bytes = b"") -> None:
        try:
            data = encode(message, payload)
        except ProtocolError as exc:
            raise HostError(f"request too large for the {self.service} host: {exc}") from None
        try:
            async with self._send_lock:
                await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._lost()
            raise HostLost(f"the {self.service} engine host (pid {self.pid}) is gone ({exc}); "
                           f"its log is {self.log}") from exc

    async def request(self, message: Message, payload: bytes = b"") -> Reply:
        request_id = message.id  # type: ignore[attr-defined]
        send, receive = anyio.create_memory_object_stream[Frame](max_buffer_size=10_000)
        self._routes[request_id] = send
        reply = Reply(request_id, receive, self)
        try:
            await self.send(message, payload)
        except BaseException:
            reply.close()
            raise
        return reply

    async def health(self, deadline: float | None = None, kill: bool = False) -> HealthReport:
        """The host's report within `deadline` (HEALTH_DEADLINE); silence past it closes this connection
        (a frame may be half sent) and raises NotAnswering; `kill`: the silent host is killed first."""
        deadline = HEALTH_DEADLINE if deadline is None else deadline
        send, receive = anyio.create_memory_object_stream[Frame](max_buffer_size=1)
        self._waiters.append(send)
        try:
            with anyio.fail_after(deadline):
                await self.send(Health())  # inside the deadline: a frozen host's full socket blocks sends
                message, _ = await receive.receive()
        except TimeoutError:
            killed = kill and kill_frozen(self.pid, self.service)
            await self.abandon(f"did not answer a health check within {deadline:g} s"
                               + (" and was killed" if killed else ""))
            raise NotAnswering(self.lost_message(), self.pid) from None
        except anyio.EndOfStream:
            raise HostLost(self.lost_message()) from None
        finally:
            if send in self._waiters:
                self._waiters.remove(send)
        assert isinstance(message, HealthReport)
        return message

    async def watch(self) -> None:
        """Runs beside read_loop: while requests wait on the host, it must answer Health in time."""
        while self.alive:
            await anyio.sleep(HEALTH_INTERVAL / 4)
            if not self._routes or time.monotonic() - self.last_heard < HEALTH_INTERVAL:
                continue
            try:
                await self.health(kill=True)
            except NotAnswering:
                log.warning("%s", self.lost_message())
                return
            except HostLost:
                return

    def forget(self, request_id: str) -> None:
        route = self._routes.pop(request_id, None)
        if route is not None:
            route.close()

    async def read_loop(self) -> None:
        reader = self._reader
        try:
            while True:
                prefix = await reader.receive_exactly(HEADER.size)
                header_len, payload_len = frame_sizes(prefix)
                message = decode(await reader.receive_exactly(header_len))
                payload = await reader.receive_exactly(payload_len) if payload_len else b""
                self.last_heard = time.monotonic()
                request_id = getattr(message, "id", None)
                route = self._routes.get(request_id) if request_id is not None else None
                if route is not None:
                    try:
                        route.send_nowait((message, payload))
                    except (anyio.BrokenResourceError, anyio.WouldBlock):
                        self.forget(request_id)
                elif request_id is None and self._waiters:
                    waiter = self._waiters.pop(0)
                    waiter.send_nowait((message, payload))
                    waiter.close()
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError):
            pass
        except Exception:
            log.exception("reading from the %s host failed", self.service)
        finally:
            self._lost()
            await self._stream.aclose()

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for route in self._routes.values():
            route.close()
        self._routes.clear()
        for waiter in self._waiters:
            waiter.close()
        self._waiters.clear()

    async def abandon(self, reason: str) -> None:
        """Gives up on the host: every request waiting on it fails, saying `reason`."""
        if self.alive:
            self.reason = reason
        await self.aclose()

    async def aclose(self) -> None:
        self._lost()
        await self._stream.aclose()


async def _open(runtime_dir: Path, service: str) -> ByteStream | None:
    where = address.read(runtime_dir, service)
    if where is None:
        return None
    try:
        if where.startswith("unix:"):
            return await anyio.connect_unix(where[5:])
        if os.name != "nt" or not where.startswith("tcp:127.0.0.1:"):
            log.warning("ignoring address %r in %s: hosts listen on Unix sockets here", where, runtime_dir)
            return None
        host, _, port = where[4:].rpartition(":")
        return await anyio.connect_tcp(host, int(port))
    except OSError:
        return None


async def _handshake(service: str, stream: ByteStream, log_file: Path, runtime_dir: Path,
                     deadline: float | None = None) -> HostConnection | None:
    """Hello -> Welcome; None if the host closes on us (it was shutting down); NotAnswering if it is
    silent past `deadline` (HEALTH_DEADLINE): a host that publishes its address runs its event loop."""
    deadline = HEALTH_DEADLINE if deadline is None else deadline
    reader = BufferedByteReceiveStream(stream)
    try:
        with anyio.fail_after(deadline):
            await stream.send(encode(Hello(protocol=PROTOCOL_VERSION, client="mcp-tts", pid=os.getpid())))
            header_len, _ = frame_sizes(await reader.receive_exactly(HEADER.size))
            message = decode(await reader.receive_exactly(header_len))
    except TimeoutError:
        pid = _peer_pid(stream, runtime_dir, service)
        await stream.aclose()
        raise NotAnswering(f"the {service} engine host{f' (pid {pid})' if pid else ''} takes connections but "
                           f"did not answer within {deadline:g} s; its log is {log_file}", pid) from None
    except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        await stream.aclose()
        return None
    if isinstance(message, Failed):
        await stream.aclose()
        raise HostError(f"the {service} host refused us: {message.message}")
    assert isinstance(message, Welcome)
    return HostConnection(service, stream, reader, message, log_file)


def _peer_pid(stream: ByteStream, runtime_dir: Path, service: str) -> int | None:
    """The pid at the other end of a host's socket: from the kernel, else the holder of its lock."""
    sock = stream.extra(SocketAttribute.raw_socket, None)
    who = address.peer(sock) if sock is not None else None
    if who is not None:
        return who.pid
    held = holder(address.lock_path(runtime_dir, service))
    return held.pid if held is not None else None


def is_our_host(pid: int, service: str) -> bool:
    """Whether `pid` runs the `service` host (its command line says so): never signal a pid on less."""
    command = process_command(pid)
    return bool(command) and is_host_command(command, service)


def kill_frozen(pid: int | None, service: str) -> bool:
    """Kills a host that has stopped answering (SIGKILL: a stopped or wedged process heeds nothing else);
    False if `pid` is not that host (nothing is sent then)."""
    if pid is None or os.name == "nt" or not is_our_host(pid, service):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    log.warning("killed the %s host (pid %d): it stopped answering", service, pid)
    return True


def alive(pid: int) -> bool:
    if os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_command(pid) != ""  # a zombie's command line is empty: it holds nothing any more


async def _gone(pid: int, within: float) -> bool:
    """Waits up to `within` seconds for `pid` to end."""
    with anyio.move_on_after(within):
        while alive(pid):
            await anyio.sleep(0.02)
        return True
    return False


def ensure_private(runtime_dir: Path) -> None:
    """The runtime dir holds the sockets that carry what agents say: it must be ours alone."""
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "nt":
        return
    info = runtime_dir.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise HostError(f"the runtime directory {runtime_dir} is not private to this user (owner uid "
                        f"{info.st_uid}, mode {oct(info.st_mode & 0o777)}); remove it, or set "
                        f"MCP_TTS_RUNTIME_DIR to a directory only you can read (mode 700)")


class Hosts:
    """The hosts this server talks to, connected on first use and reconnected after a loss."""

    def __init__(self, runtime_dir: Path, task_group: TaskGroup, idle_timeouts: dict[str, float]) -> None:
        self.runtime_dir = runtime_dir
        self._tg = task_group
        self._idle = idle_timeouts
        self._conns: dict[str, HostConnection] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self.spawned: dict[str, float] = {}  # service -> seconds its start took, for hosts we started

    def _live(self, service: str) -> HostConnection | None:
        """The connection in use, unless its host is known to be gone (a kill -9 a moment ago: its socket's
        end is not read yet, but its pid has ended)."""
        conn = self._conns.get(service)
        if conn is None or not conn.alive:
            return None
        if os.name != "nt" and not alive(conn.pid):
            conn.reason = "has ended (killed, or crashed)"
            conn._lost()
            return None
        return conn

    async def get(self, service: str, python: Path | None = None) -> HostConnection:
        """The service's host: the one in use, else a running one, else one started now. A running host
        started under other settings than ours (HOST_SETTINGS: the environment of the server that started
        it) is restarted when nobody else uses it (no request running, no other server connected);
        otherwise it is used as it is, and `conn.stale` says so (the say result's notes carry it)."""
        conn = self._live(service)
        if conn is not None and conn.stale is None and conn.settled:
            return conn
        lock = self._locks.setdefault(service, anyio.Lock())
        async with lock:
            conn = self._live(service)
            if conn is None:
                ensure_private(self.runtime_dir)
                conn = await self._connect(service)
                if conn is None:
                    conn = await self._spawn(service, python or Path(sys.executable))
                self._adopt(service, conn)
            startable = python is not None or service in SERVER_SERVICES  # we know its interpreter
            if startable and not conn.started_here and await self._started_elsewhere(conn):
                conn = await self._restart(service, conn, python or Path(sys.executable))
            conn.settled = True  # until then, a second caller waits on the lock rather than take a host
            return conn          # that may yet be restarted under it

    async def request(self, service: str, message: Message, python: Path | None = None) -> Reply:
        """`message` sent to the service's host. A host found gone as it is sent (killed since its last
        reply: the socket refuses the request, so it took nothing) is replaced once, and the message sent
        to the new one; a host that goes away later fails the reply (HostLost)."""
        conn = await self.get(service, python)
        try:
            return await conn.request(message)
        except HostLost as exc:
            log.info("%s; sending to a new one", exc)
            return await (await self.get(service, python)).request(message)

    def own_settings(self, service: str) -> dict[str, str]:
        """The settings a host this server starts would have (see protocol.host_settings)."""
        return host_settings(service, _host_env(), self._idle.get(service, DEFAULT_IDLE_TIMEOUT))

    async def _started_elsewhere(self, conn: HostConnection) -> bool:
        """Whether the host runs under other settings than ours and nobody else uses it now (then it may be
        restarted); where it is in use, `conn.stale` says how its settings differ. A host that reports no
        settings (an older one) is taken as it is."""
        try:
            report = await conn.health()
        except (HostLost, TimeoutError):
            return False
        theirs = report.details.get(SETTINGS_DETAIL)
        ours = self.own_settings(conn.service)
        if not isinstance(theirs, dict) or theirs == ours:
            conn.stale = None
            return False
        if report.active == 0 and report.connections <= 1:
            return True
        differ = ", ".join(f"{name}={theirs[name]!r}" if name in theirs else f"{name} unset"
                           for name in sorted(set(theirs) | set(ours)) if theirs.get(name) != ours.get(name))
        conn.stale = (f"the {conn.service} host (pid {conn.pid}) was started by another server with other settings "
                      f"({differ}) and is in use, so it was kept; this server restarts it under its own "
                      f"settings at a request once nobody else uses it, or run `mcp-tts hosts stop`")
        return False

    async def _restart(self, service: str, conn: HostConnection, python: Path) -> HostConnection:
        """Stops a host started under other settings, and starts one under ours."""
        log.info("restarting the %s host (pid %d): it runs under other settings than this server's",
                 service, conn.pid)
        with anyio.move_on_after(STOP_GRACE):
            try:
                await conn.send(Shutdown())
            except HostLost:
                pass
        await conn.abandon("was restarted under this server's settings")
        if not await _gone(conn.pid, SPAWN_TIMEOUT):
            raise HostError(f"the {service} host (pid {conn.pid}) runs under other settings than this server's and "
                            f"did not stop within {SPAWN_TIMEOUT:.0f} s when asked; run `mcp-tts hosts stop`")
        fresh = await self._spawn(service, python)
        self._adopt(service, fresh)
        return fresh

    def _adopt(self, service: str, conn: HostConnection) -> None:
        self._conns[service] = conn
        self._tg.start_soon(conn.read_loop)
        self._tg.start_soon(conn.watch)

    async def _connect(self, service: str) -> HostConnection | None:
        """A connection to the running host; None if none runs, or the one that ran was frozen and is
        now killed (a frozen host that is not ours to kill is an error)."""
        stream = await _open(self.runtime_dir, service)
        if stream is None:
            return None
        try:
            return await _handshake(service, stream, address.log_path(self.runtime_dir, service), self.runtime_dir)
        except NotAnswering as exc:
            if not kill_frozen(exc.pid, service):
                raise HostError(f"{exc}; pid {exc.pid} is not a {service} host this program can stop: "
                                f"end it, then try again") from None
            log.warning("%s: killed it", exc)
            await _gone(exc.pid, 2.0)  # it frees its lock as it dies
            return None

    async def _spawn(self, service: str, python: Path) -> HostConnection:
        spawn_lock = LockFile(self.runtime_dir / f"{service}.spawn.lock")
        with anyio.move_on_after(SPAWN_TIMEOUT):
            while not spawn_lock.acquire():  # polled here: a thread left blocking would keep it forever
                _refuse_foreign(spawn_lock.path, "a server")
                await anyio.sleep(0.02)
        if not spawn_lock.held:
            raise HostError(f"timed out waiting for another server to start the {service} host")
        try:
            return await self._start(service, python)
        finally:
            spawn_lock.release()

    async def _start(self, service: str, python: Path) -> HostConnection:
        """Under the spawn lock: starts the host once its service lock is free, and connects to it."""
        lock_path = address.lock_path(self.runtime_dir, service)
        log_file = address.log_path(self.runtime_dir, service)
        started = time.perf_counter()
        deadline = time.monotonic() + SPAWN_TIMEOUT
        process: subprocess.Popen[bytes] | None = None
        while True:
            conn = await self._connect(service)  # another server may have started it meanwhile
            if conn is not None:
                if process is not None:
                    conn.started_here = True
                    self.spawned[service] = time.perf_counter() - started
                    log.info("started the %s host (pid %d) in %.2f s", service, conn.pid, self.spawned[service])
                return conn
            code = HELD_ELSEWHERE if process is None else process.poll()
            if code == HELD_ELSEWHERE:  # not started yet, or it found the lock taken and left at once
                held = holder(lock_path)
                if held is None:
                    process = start_host(service, python, self.runtime_dir,
                                         self._idle.get(service, DEFAULT_IDLE_TIMEOUT))
                else:
                    _refuse_foreign(lock_path, f"the {service} host", service)
                    process = None  # one of ours: starting (it will answer) or leaving (it will go)
                    if _stopped(held.pid) and kill_frozen(held.pid, service):
                        await _gone(held.pid, 2.0)
            elif code is not None:
                raise HostError(f"the {service} engine host exited with status {code} while starting:\n"
                                f"{tail(log_file)}")
            if time.monotonic() > deadline:
                held = holder(lock_path)
                stuck = held is not None and kill_frozen(held.pid, service)  # holding the lock, answering nothing
                raise HostError(f"the {service} engine host did not start within {SPAWN_TIMEOUT:.0f} s"
                                + (f" (pid {held.pid} held its lock without answering, and was killed)" if stuck
                                   else "") + f"; see {log_file}:\n{tail(log_file)}")
            await anyio.sleep(0.01 if process is not None else 0.05)

    async def existing(self, service: str) -> HostConnection | None:
        """A connection to the service's host if one runs; never starts one."""
        conn = self._live(service)
        if conn is not None:
            return conn
        async with self._locks.setdefault(service, anyio.Lock()):
            conn = self._live(service)
            if conn is not None:
                return conn
            conn = await self._connect(service)
            if conn is not None:
                self._adopt(service, conn)
            return conn

    async def aclose(self) -> None:
        for conn in self._conns.values():
            await conn.aclose()


def _refuse_foreign(lock_path: Path, meant: str, service: str | None = None) -> None:
    """Fails at once if a program other than ours holds the lock: waiting would not free it."""
    held = holder(lock_path)
    if held is None or os.name == "nt":
        return
    ours = (is_host_command(held.command, service) if service
            else held.pid == os.getpid() or "mcp_tts" in held.command or "mcp-tts" in held.command)
    if not ours:
        raise HostError(f"{lock_path} is held by another program, {held}, not {meant}: end that process, "
                        f"or point MCP_TTS_RUNTIME_DIR elsewhere")


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, or a debugger): it answers nothing until continued."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] in (["T"], ["t"])


def start_host(service: str, python: Path, runtime_dir: Path, idle_timeout: float) -> subprocess.Popen[bytes]:
    """Starts a host in a session of its own, so that it outlives this server."""
    log_file = address.log_path(runtime_dir, service)
    with open(log_file, "ab") as log_out:
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
        else:
            kwargs["start_new_session"] = True
        # -I: no current directory, PYTHONPATH or user site on sys.path, in any family's interpreter
        process = subprocess.Popen(
            [str(python), "-I", str(LAUNCHER), HOST_MODULE, service, "--runtime-dir", str(runtime_dir),
             "--idle-timeout", str(idle_timeout)],
            stdin=subprocess.DEVNULL, stdout=log_out, stderr=log_out, close_fds=True,
            env=_host_env(), cwd=runtime_dir, **kwargs)
    threading.Thread(target=process.wait, daemon=True).start()  # reaps it if it exits before we do
    return process


def _host_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # torch.compile's kernels, kept across host restarts and reboots (the default is in /tmp)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(platformdirs.user_cache_dir(APP, appauthor=False)) / "inductor"))
    return env


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def stop_host(runtime_dir: Path, service: str) -> bool:
    """Asks a running host to exit; False if none was running."""
    stream = None
    with anyio.move_on_after(STATUS_DEADLINE):
        stream = await _open(runtime_dir, service)
    if stream is None:
        return False
    try:  # no Hello first: a host of another protocol version takes Shutdown all the same
        with anyio.move_on_after(STATUS_DEADLINE):  # a frozen host's full socket takes nothing
            await stream.send(encode(Shutdown()))
    except (anyio.BrokenResourceError, OSError):
        return False
    finally:
        await stream.aclose()
    return True


@dataclass
class HostState:
    """One service's host as `mcp-tts hosts` finds it: its report, or why there is none."""

    service: str
    pid: int | None = None
    report: HealthReport | None = None
    problem: str | None = None


async def survey(runtime_dir: Path, services: tuple[str, ...],
                 deadline: float | None = None) -> list[HostState]:
    """Every service's host that runs, asked at once, each within `deadline` (STATUS_DEADLINE) whatever
    its state: a frozen host is listed as not answering, with the pid its socket or lock names."""
    deadline = STATUS_DEADLINE if deadline is None else deadline
    found: dict[str, HostState] = {}

    async def ask(service: str) -> None:
        state = await _ask_health(runtime_dir, service, deadline)
        if state is not None:
            found[service] = state

    async with anyio.create_task_group() as tg:
        for service in services:
            tg.start_soon(ask, service)
    return [found[s] for s in services if s in found]


async def _ask_health(runtime_dir: Path, service: str, deadline: float) -> HostState | None:
    held = holder(address.lock_path(runtime_dir, service))
    if held is not None and not is_host_command(held.command, service):
        return HostState(service, held.pid, problem=f"its lock is held by another program, {held}")
    pid = held.pid if held else None
    stream = None
    with anyio.move_on_after(deadline):
        stream = await _open(runtime_dir, service)
    if stream is None:
        return None if pid is None else HostState(service, pid, problem=f"pid {pid}, starting or stopping")
    try:
        async with anyio.create_task_group() as tg:
            state = await _report(tg, service, stream, pid, runtime_dir, deadline)
            tg.cancel_scope.cancel()  # the read loop
    finally:
        await stream.aclose()
    return state


async def _report(tg: TaskGroup, service: str, stream: ByteStream, pid: int | None, runtime_dir: Path,
                  deadline: float) -> HostState | None:
    try:
        conn = await _handshake(service, stream, address.log_path(runtime_dir, service), runtime_dir, deadline)
        if conn is None:
            return None if pid is None else HostState(service, pid, problem=f"pid {pid}, stopping")
        tg.start_soon(conn.read_loop)
        return HostState(service, conn.pid, report=await conn.health(deadline))
    except NotAnswering as exc:
        pid = exc.pid or pid
        return HostState(service, pid, problem=f"pid {pid or '?'}, not answering (no reply within "
                                               f"{deadline:g} s); `mcp-tts hosts stop` stops it")
    except HostError as exc:
        return HostState(service, pid, problem=str(exc))


async def stop_service(runtime_dir: Path, service: str, grace: float | None = None) -> str | None:
    """Stops the service's host whatever its state: Shutdown; after `grace` (STOP_GRACE) SIGTERM, then
    SIGKILL, by the pid that holds its lock, once that pid is seen to run the host. Holds the spawn lock
    meanwhile, so that no server starts one mid-way. What was done, or None if no host ran."""
    grace = STOP_GRACE if grace is None else grace
    spawn_lock = LockFile(runtime_dir / f"{service}.spawn.lock")
    with anyio.move_on_after(grace):
        while not spawn_lock.acquire():
            await anyio.sleep(0.02)
    try:
        held = holder(address.lock_path(runtime_dir, service))
        if held is not None and not is_host_command(held.command, service):
            return f"not stopped: its lock is held by another program, {held}"
        asked = await stop_host(runtime_dir, service)
        if held is None:
            return "asked to stop" if asked else None
        if await _gone(held.pid, grace):
            return f"stopped (pid {held.pid})"
        if not is_our_host(held.pid, service):
            return f"stopped (pid {held.pid})"
        os.kill(held.pid, signal.SIGTERM)
        os.kill(held.pid, signal.SIGCONT)  # a stopped process hears SIGTERM only once it runs again
        if await _gone(held.pid, grace):
            return f"stopped (pid {held.pid}, by SIGTERM: it did not answer)"
        if kill_frozen(held.pid, service):
            await _gone(held.pid, grace)
        return f"stopped (pid {held.pid}, by SIGKILL: it did not answer)"
    except ProcessLookupError:
        return f"stopped (pid {held.pid})"
    finally:
        spawn_lock.release()


@asynccontextmanager
async def open_hosts(runtime_dir: Path, idle_timeouts: dict[str, float]) -> AsyncIterator[Hosts]:
    async with anyio.create_task_group() as tg:
        hosts = Hosts(runtime_dir, tg, idle_timeouts)
        try:
            yield hosts
        finally:
            await hosts.aclose()
            tg.cancel_scope.cancel()
