"""`mcp-tts serve` driven by raw JSON-RPC lines on its stdin, for what the real MCP client never sends."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

from tests.support.mcp_client import MCP_TTS


class RawServer:
    """`mcp-tts serve` driven line by line, after a proper initialize handshake."""

    def __init__(self, env: dict[str, str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([MCP_TTS, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        self._buffer = b""
        self.send(json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}))
        assert self.read(30)["id"] == "init"
        self.send('{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def send(self, line: str | bytes) -> None:
        self.proc.stdin.write((line.encode() if isinstance(line, str) else line) + b"\n")
        self.proc.stdin.flush()

    def read(self, deadline: float = 10) -> dict | None:
        """The next line of stdout, decoded; None when none came within `deadline` seconds."""
        end = time.monotonic() + deadline
        while b"\n" not in self._buffer:
            if not select.select([self.proc.stdout], [], [], max(0.0, end - time.monotonic()))[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            assert chunk, f"the server exited (code {self.proc.poll()})"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)  # strict enough: the reply itself must be JSON

    def ping(self, request_id: str) -> None:
        """The server is alive and nothing unasked for is waiting on stdout."""
        self.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping"}))
        answer = self.read()
        assert answer == {"jsonrpc": "2.0", "id": request_id, "result": {}}, answer

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
