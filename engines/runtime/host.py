"""The engine host process: one per service per user, shared by every mcp-tts server of that user.

Runs in the service's own interpreter (a family venv, or the server's for builtin and speaker).
Started on demand by a server, in a session of its own so that it outlives that server; exits
after `--idle-timeout` seconds with nothing to do, so that a GPU's memory comes back.

    python -m mcp_tts.engines.runtime.host SERVICE --runtime-dir DIR [--idle-timeout SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from ..contract import address
from ..contract.catalog import SERVICES
from ..contract.lockfile import HELD_ELSEWHERE, LockFile, holder
from ..contract.protocol import (
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
    encode,
    host_settings,
    read_message,
)

log = logging.getLogger("mcp_tts.host")

# Seconds a Health answer waits for the service's details; servers give the whole answer 4 s
# (mcp_tts.host_client.HEALTH_DEADLINE) before they take the host for frozen.
DETAILS_WAIT = 1.0

class Connection:
    """One client's socket, as the service sees it; `send` may be called from the event loop only."""

    _next = 0

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        Connection._next += 1
        self.number = Connection._next
        self._writer = writer
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._writer.close()

    def send(self, message: Message, payload: bytes = b"") -> None:
        if not self.closed:
            self._writer.write(encode(message, payload))

    async def drain(self) -> None:
        if not self.closed:
            try:
                await self._writer.drain()
            except ConnectionError:
                self.closed = True


class Service(Protocol):
    name: str

    def active(self) -> int: ...

    def details(self) -> dict[str, Any]: ...

    async def handle(self, conn: Connection, message: Message, payload: bytes) -> None: ...

    def disconnected(self, conn: Connection) -> None: ...

    async def close(self) -> None: ...


class Host:
    def __init__(self, service: Service, runtime_dir: Path, idle_timeout: float) -> None:
        self.service = service
        self.runtime_dir = runtime_dir
        self.idle_timeout = idle_timeout
        self.started = time.monotonic()
        self.started_at = time.time()
        self.last_activity = time.monotonic()
        self.served = 0
        self.settings = host_settings(service.name, os.environ, idle_timeout)  # the starting server's, for life
        self.connections: set[Connection] = set()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        if address.use_unix_sockets():
            path = address.socket_path(self.runtime_dir, self.service.name)
            path.unlink(missing_ok=True)  # we hold the service lock: any socket file left is stale
            server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, 0o600)
            where = f"unix:{path}"
        else:
            server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)
            where = "tcp:127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT) if os.name != "nt" else ():
            loop.add_signal_handler(signum, self._signalled, signum)
        address.publish(self.runtime_dir, self.service.name, where)
        log.info("%s host %d listening on %s (idle timeout %.0f s)", self.service.name, os.getpid(), where,
                 self.idle_timeout)
        watchdog = asyncio.create_task(self._watch_idle())
        try:
            await self._stop.wait()
        finally:
            address.withdraw(self.runtime_dir, self.service.name, where)
            server.close()
            watchdog.cancel()
            for conn in list(self.connections):  # their handlers end on their own, before the loop does
                conn.close()
            await self.service.close()
            log.info("%s host %d exiting", self.service.name, os.getpid())

    def _signalled(self, signum: int) -> None:
        log.info("%s: shutting down", signal.Signals(signum).name)
        self._stop.set()

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout / 4))
            now = time.monotonic()
            if self.service.active():
                self.last_activity = now
            elif now - self.last_activity > self.idle_timeout:
                log.info("idle for %.0f s", now - self.last_activity)
                self._stop.set()
                return

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        who = address.peer(sock) if sock is not None else None
        if who is not None and who.uid != os.getuid():  # the socket is 0600 in a 0700 dir: this is belt and braces
            log.warning("refused a connection from pid %d of another user (uid %d)", who.pid, who.uid)
            writer.write(encode(Failed(id="", code="bad_request", message=f"this host serves user {os.getuid()} only")))
            writer.close()
            return
        conn = Connection(writer)
        self.connections.add(conn)
        try:
            while True:
                frame = await read_message(reader)
                if frame is None:
                    break
                message, payload = frame
                if not isinstance(message, (Hello, Health)):  # a refused or probing client keeps no host alive
                    self.last_activity = time.monotonic()
                await self._dispatch(conn, message, payload)
                await conn.drain()
        except (ProtocolError, ConnectionError) as exc:
            if not self._stop.is_set():
                log.warning("connection %d dropped: %s", conn.number, exc)
        except asyncio.CancelledError:  # the loop is ending; asyncio would log a cancelled handler as an error
            pass
        finally:
            conn.closed = True
            self.connections.discard(conn)
            self.service.disconnected(conn)
            writer.close()

    async def _dispatch(self, conn: Connection, message: Message, payload: bytes) -> None:
        if isinstance(message, Hello):
            if message.protocol != PROTOCOL_VERSION:
                conn.send(Failed(id="", code="bad_request",
                                 message=f"protocol {message.protocol} not spoken here (host speaks "
                                         f"{PROTOCOL_VERSION}); stop this host with `mcp-tts hosts stop`"))
                return
            conn.send(Welcome(protocol=PROTOCOL_VERSION, service=self.service.name, pid=os.getpid(),
                              started_at=self.started_at))
        elif isinstance(message, Health):
            details = {**await self._details(), SETTINGS_DETAIL: self.settings}
            now = time.monotonic()
            conn.send(HealthReport(service=self.service.name, pid=os.getpid(), uptime=now - self.started,
                                   idle_for=0.0 if self.service.active() else now - self.last_activity,
                                   idle_timeout=self.idle_timeout, connections=len(self.connections),
                                   active=self.service.active(), served=self.served, details=details))
        elif isinstance(message, Shutdown):
            log.info("shutdown asked by connection %d", conn.number)
            self._stop.set()
        else:
            self.served += 1
            await self.service.handle(conn, message, payload)


    async def _details(self) -> dict[str, Any]:
        """The service's details, asked off the event loop and briefly: servers kill a host whose Health goes
        unanswered, and asking a GPU for its free memory waits while another thread starts CUDA."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(None, self.service.details), DETAILS_WAIT)
        except asyncio.TimeoutError:
            return {"busy": f"no details within {DETAILS_WAIT:g} s: the engine is busy"}
        except Exception as exc:  # a report, not a reason to drop the connection
            return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_tts.engines.runtime.host")
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--runtime-dir", type=Path, required=True)
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    args.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = LockFile(address.lock_path(args.runtime_dir, args.service))
    # Leave at once, before opening a device or publishing an address: whoever started us looks at the
    # holder (a host of ours still serving or shutting down, or another program) and decides.
    if not lock.acquire():
        log.info("%s is held by %s; leaving", lock.path, holder(lock.path) or "another process")
        return HELD_ELSEWHERE
    try:
        module = importlib.import_module(SERVICES[args.service])
        service = module.create_service()
        asyncio.run(Host(service, args.runtime_dir, args.idle_timeout).run())
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
