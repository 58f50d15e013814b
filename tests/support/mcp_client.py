"""The real MCP client over stdio against `mcp-tts serve`, and readers of its results."""

from __future__ import annotations

import base64
import io
import os
import shutil
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

BIN = Path(sys.executable).parent
MCP_TTS = str(BIN / "mcp-tts") if (BIN / "mcp-tts").exists() else shutil.which("mcp-tts") or "mcp-tts"


@asynccontextmanager
async def mcp_session(env: dict[str, str], errlog_path: Path | None = None):
    """The real MCP client over stdio against `mcp-tts serve`."""
    params = StdioServerParameters(command=MCP_TTS, args=["serve"], env=env)
    errlog = open(errlog_path or os.devnull, "w")
    try:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        errlog.close()


def audio_of(result) -> tuple[np.ndarray, int]:
    """The MCP audio content of a tool result, decoded."""
    block = next(c for c in result.content if c.type == "audio")
    data, rate = sf.read(io.BytesIO(base64.b64decode(block.data)), dtype="float32")
    return data, rate


def error_text(result) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


class Progress:
    """A progress callback for call_tool that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, progress, total, message) -> None:
        self.messages.append(message or "")
