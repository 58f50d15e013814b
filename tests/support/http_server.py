"""`mcp-tts http` for tests: as a process on a loopback port (real hosts), or its app on uvicorn in the
test's own event loop (beside a scripted engine host)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import httpx2 as httpx
import uvicorn

from tests.support.mcp_client import MCP_TTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_process(env: dict[str, str], *args: str, log: Path | None = None):
    """`mcp-tts http` on a free loopback port, ready (its /health answers); yields (base URL, process)."""
    port = free_port()
    out = open(log or os.devnull, "w")
    proc = subprocess.Popen([MCP_TTS, "http", "--port", str(port), *args], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mcp-tts http exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mcp-tts http did not answer /health within 60 s")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


@asynccontextmanager
async def uvicorn_app(app):
    """The ASGI app on uvicorn, on a free loopback port, in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
