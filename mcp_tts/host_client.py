"""The server's side of the engine-host boundary: find, start and talk to the user's hosts.

A host is shared by every server of the user. The first server that needs one starts it, under a
spawn lock, so that two servers starting together end up with one host; the host's own service
lock makes a second host leave at once. A host that has died is started again on the next request.
"""

from __future__ import annotations

import logging
import os
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
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import engines
from .config import APP
from .engines.contract import address
from .engines.contract.lockfile import LockFile
from .engines.contract.protocol import (
    HEADER,
    PROTOCOL_VERSION,
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
)
from .errors import HostError

log = logging.getLogger("mcp_tts.hosts")

ENGINES_DIR = Path(engines.__file__).resolve().parent
SPAWN_TIMEOUT = 30.0

# engines/launch.py runs the host in any interpreter with only the engine side importable: a family
# venv must not see the server's site-packages, nor the server package itself.
LAUNCHER = ENGINES_DIR / "launch.py"
HOST_MODULE = "mcp_tts.engines.runtime.host"

Frame = tuple[Message, bytes]


class HostLost(HostError):
    pass


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
            raise HostLost(f"the {self.conn.service} engine host (pid {self.conn.pid}) went away "
                           f"mid-request; its log is {self.conn.log}. The next request starts a new host.") from None

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

    async def health(self) -> HealthReport:
        send, receive = anyio.create_memory_object_stream[Frame](max_buffer_size=1)
        self._waiters.append(send)
        try:
            await self.send(Health())
            with anyio.fail_after(5):
                message, _ = await receive.receive()
        except anyio.EndOfStream:
            raise HostLost(f"the {self.service} host went away") from None
        finally:
            if send in self._waiters:
                self._waiters.remove(send)
        assert isinstance(message, HealthReport)
        return message

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


async def _handshake(service: str, stream: ByteStream, log_file: Path) -> HostConnection | None:
    """Hello -> Welcome; None if the host closes on us (it was shutting down)."""
    await stream.send(encode(Hello(protocol=PROTOCOL_VERSION, client="mcp-tts", pid=os.getpid())))
    reader = BufferedByteReceiveStream(stream)
    try:
        with anyio.fail_after(10):
            header_len, _ = frame_sizes(await reader.receive_exactly(HEADER.size))
            message = decode(await reader.receive_exactly(header_len))
    except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, OSError, TimeoutError):
        await stream.aclose()
        return None
    if isinstance(message, Failed):
        await stream.aclose()
        raise HostError(f"the {service} host refused us: {message.message}")
    assert isinstance(message, Welcome)
    return HostConnection(service, stream, reader, message, log_file)


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

    async def get(self, service: str, python: Path | None = None) -> HostConnection:
        conn = self._conns.get(service)
        if conn is not None and conn.alive:
            return conn
        lock = self._locks.setdefault(service, anyio.Lock())
        async with lock:
            conn = self._conns.get(service)
            if conn is not None and conn.alive:
                return conn
            ensure_private(self.runtime_dir)
            conn = await self._connect(service)
            if conn is None:
                conn = await self._spawn(service, python or Path(sys.executable))
            self._conns[service] = conn
            self._tg.start_soon(conn.read_loop)
            return conn

    async def _connect(self, service: str) -> HostConnection | None:
        stream = await _open(self.runtime_dir, service)
        if stream is None:
            return None
        return await _handshake(service, stream, address.log_path(self.runtime_dir, service))

    async def _spawn(self, service: str, python: Path) -> HostConnection:
        spawn_lock = LockFile(self.runtime_dir / f"{service}.spawn.lock")
        with anyio.move_on_after(SPAWN_TIMEOUT):
            while not spawn_lock.acquire():  # polled here: a thread left blocking would keep it forever
                await anyio.sleep(0.02)
        if not spawn_lock.held:
            raise HostError(f"timed out waiting for another server to start the {service} host")
        try:
            conn = await self._connect(service)  # another server may have started it meanwhile
            if conn is not None:
                return conn
            started = time.perf_counter()
            process = start_host(service, python, self.runtime_dir, self._idle.get(service, 600.0))
            log_file = address.log_path(self.runtime_dir, service)
            with anyio.move_on_after(SPAWN_TIMEOUT):
                while True:
                    conn = await self._connect(service)
                    if conn is not None:
                        self.spawned[service] = time.perf_counter() - started
                        log.info("started the %s host (pid %d) in %.2f s", service, conn.pid,
                                 self.spawned[service])
                        return conn
                    if process.poll() not in (None, 0):
                        raise HostError(f"the {service} engine host exited with status {process.returncode} "
                                        f"while starting:\n{tail(log_file)}")
                    await anyio.sleep(0.01)
            raise HostError(f"the {service} engine host did not start within {SPAWN_TIMEOUT:.0f} s; "
                            f"see {log_file}:\n{tail(log_file)}")
        finally:
            spawn_lock.release()

    async def existing(self, service: str) -> HostConnection | None:
        """A connection to the service's host if one runs; never starts one."""
        conn = self._conns.get(service)
        if conn is not None and conn.alive:
            return conn
        async with self._locks.setdefault(service, anyio.Lock()):
            conn = self._conns.get(service)
            if conn is not None and conn.alive:
                return conn
            conn = await self._connect(service)
            if conn is not None:
                self._conns[service] = conn
                self._tg.start_soon(conn.read_loop)
            return conn

    async def aclose(self) -> None:
        for conn in self._conns.values():
            await conn.aclose()


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
    stream = await _open(runtime_dir, service)
    if stream is None:
        return False
    try:  # no Hello first: a host of another protocol version takes Shutdown all the same
        await stream.send(encode(Shutdown()))
    except (anyio.BrokenResourceError, OSError):
        return False
    finally:
        await stream.aclose()
    return True


@asynccontextmanager
async def open_hosts(runtime_dir: Path, idle_timeouts: dict[str, float]) -> AsyncIterator[Hosts]:
    async with anyio.create_task_group() as tg:
        hosts = Hosts(runtime_dir, tg, idle_timeouts)
        try:
            yield hosts
        finally:
            await hosts.aclose()
            tg.cancel_scope.cancel()
