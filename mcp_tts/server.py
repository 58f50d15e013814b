"""The MCP stdio server: thin tools over `Speech`, one server per agent session.

The handshake is answered at once; the default backend's host and the speaker are warmed in the
background afterwards, so the first `say` is fast without making the client wait to connect.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import AudioContent, CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from . import families
from .config import Settings
from .errors import TTSError
from .host_client import open_hosts
from .models import (
    AddVoiceResult,
    DesignVoiceResult,
    ListVoicesResult,
    Output,
    SayResult,
    StopResult,
    SwitchBackendResult,
    Wait,
)
from .speech import SayRequest, Speech
from .version import __version__

log = logging.getLogger("mcp_tts.server")

INSTRUCTIONS = """\
Speaks to the person at this machine. Use `say` for short spoken updates: what you finished,
what you need from them, what went wrong. Speech is shared by every agent on the machine and
plays one utterance at a time, so keep each one brief."""

SAY_DESCRIPTION = """\
Speak text aloud to the person at the computer, in the chosen voice.

Write for the ear: one to three short, plain sentences, as you would say them to a colleague.
Never pass code, file contents, long paths, URLs, tables or markdown; say what they mean
("the tests pass", "I need your API key") and leave the details in your written reply.
By default this returns as soon as the audio has started playing, so you can keep working; the
result says where the audio went (a device, a WAV file when no device exists, or attached audio
with output="audio"), how long it is, and how quickly it started. Utterances from all agents on
the machine queue and never overlap; call `stop` to silence your queued speech."""


@dataclass
class State:
    settings: Settings
    speech: Speech


def create_server(settings: Settings | None = None) -> MCPServer:
    settings = settings or Settings.from_env()
    holder: dict[str, State] = {}

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[State]:
        idle = {"speaker": settings.speaker_idle_timeout}
        idle.update({f.service: settings.idle_timeout for f in families.FAMILIES.values()})
        async with open_hosts(settings.runtime_dir, idle) as hosts, anyio.create_task_group() as tg:
            state = State(settings, Speech(settings, hosts, tg))
            holder["state"] = state
            tg.start_soon(_warm_up, state)
            try:
                yield state
            finally:
                tg.cancel_scope.cancel()

    mcp = MCPServer("mcp-tts", title="mcp-tts: speech for AI agents", version=__version__,
                    instructions=INSTRUCTIONS, lifespan=lifespan)

    def speech() -> Speech:
        return holder["state"].speech

    @mcp.tool(name="say", title="Speak aloud", description=SAY_DESCRIPTION,
              annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                          open_world_hint=False))
    async def say(
        text: Annotated[str, Field(description="what to say: short, speakable sentences, not code")],
        voice: Annotated[str | None, Field(max_length=200, description="a preset voice of the backend or a saved voice "
                                                      "(see list_voices); default: the backend's")] = None,
        backend: Annotated[str | None, Field(max_length=64, description="backend to use for this call; default: the "
                                                        "current one (see switch_backend)")] = None,
        model: Annotated[str | None, Field(max_length=4096, description="model of the backend for this call; "
                                                                       "default: the current one")] = None,
        language: Annotated[str | None, Field(max_length=32, description="language code such as 'en', 'de', 'ja', or "
                                                         "'auto'")] = None,
        instruct: Annotated[str | None, Field(max_length=1000, description="style or emotion, e.g. 'cheerful' (backends "
                                                         "that support it)")] = None,
        speed: Annotated[float, Field(ge=0.5, le=2.0, description="speaking rate, 1.0 is normal")] = 1.0,
        output: Annotated[Output, Field(description="auto: play, or a WAV file when there is no audio "
                                                     "device; play; file; audio: attach the audio to the "
                                                     "result")] = "auto",
        wait: Annotated[Wait, Field(description="return when playback starts (default), ends, or at "
                                                 "once")] = "start",
        file_path: Annotated[str | None, Field(max_length=4096, description="where to write the audio (.wav, .flac, .ogg) "
                                                          "with output='file'")] = None,
        raw: Annotated[bool, Field(description="speak the text exactly as written; by default markdown, code "
                                               "blocks, paths, URLs and identifiers are read as a person would "
                                               "say them")] = False,
        exaggeration: Annotated[float | None, Field(ge=0.0, le=2.0, description="chatterbox: emotional "
                                                    "intensity, 0.5 neutral, higher more dramatic")] = None,
        cfg_weight: Annotated[float | None, Field(ge=0.0, le=1.0, description="chatterbox: adherence to the "
                                                  "voice and pacing, lower is slower and looser; 0 turns "
                                                  "guidance off")] = None,
        temperature: Annotated[float | None, Field(ge=0.05, le=5.0, description="chatterbox backends: "
                                                   "sampling randomness (0.8 by default)")] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, SayResult]:
        expression = {k: v for k, v in (("exaggeration", exaggeration), ("cfg_weight", cfg_weight),
                                        ("temperature", temperature)) if v is not None}
        request = SayRequest(text=text, voice=voice, backend=backend, model=model, language=language,
                             instruct=instruct,
                             speed=speed, output=None if output == "auto" else output, wait=wait,
                             file_path=file_path, raw=raw, expression=expression)
        try:
            result, audio = await speech().say(request, _progress(ctx))
        except TTSError as exc:
            raise ToolError(str(exc)) from None
        return _with_audio(result, audio, _say_summary(result))

    @mcp.tool(name="list_voices", title="List voices",
              annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_voices(
        backend: Annotated[str | None, Field(max_length=64, description="only this backend's voices")] = None,
    ) -> ListVoicesResult:
        """The voices each backend offers (presets) and the user's saved voices, with the backends that can
        use each. Backends whose family is not installed are listed with their install command."""
        try:
            return await speech().list_voices(backend)
        except TTSError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(name="design_voice", title="Design a voice from a description",
              annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                          open_world_hint=False))
    async def design_voice(
        description: Annotated[str, Field(max_length=2000, description="the voice in words: gender, age, pitch, pace, accent")],
        name: Annotated[str, Field(max_length=200, description="name to save it under: letters, digits, '_', '-', '.'")],
        sample_text: Annotated[str | None, Field(max_length=5000, description="what the returned sample says")] = None,
        backend: Annotated[str | None, Field(max_length=64, description="'builtin' (rule-based, instant) or 'qwen-design' "
                                                        "(neural)")] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, DesignVoiceResult]:
        """Create a named voice from a text description, save it in the voice library and return a sample.
        Use the name as `voice` in later `say` calls."""
        try:
            result, wav = await speech().design_voice(description, name, sample_text, backend, _progress(ctx))
        except TTSError as exc:
            raise ToolError(str(exc)) from None
        return _with_audio(result, wav, f"Saved voice {result.name!r} ({result.backend}). A sample is attached.")

    @mcp.tool(name="add_voice", title="Save a voice from a recording",
              annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                          open_world_hint=False))
    async def add_voice(
        name: Annotated[str, Field(max_length=200, description="name to save it under: letters, digits, '_', '-', '.'")],
        audio_path: Annotated[str, Field(max_length=4096, description="a recording of one speaker, 2-30 s, 16 kHz or more "
                                                    "(WAV, FLAC, OGG, MP3)")],
        transcript: Annotated[str, Field(max_length=2000, description="exactly what the recording says")],
    ) -> AddVoiceResult:
        """Save a cloneable voice from the user's own recording, for the cloning backends (qwen-base,
        chatterbox). Use the name as `voice` in `say`."""
        try:
            return await speech().add_voice(name, audio_path, transcript)
        except TTSError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(name="switch_backend", title="Switch the default backend",
              annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False))
    async def switch_backend(
        backend: Annotated[str, Field(max_length=64, description="backend name, see list_voices")],
        model: Annotated[str | None, Field(max_length=4096, description="model of that backend; default: its first")] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> SwitchBackendResult:
        """Make a backend the default for later `say` calls in this session, and load its model. Reports
        whether it was a hot swap inside a running engine host or a new host, and how long it took."""
        try:
            return await speech().switch_backend(backend, model, _progress(ctx))
        except TTSError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(name="stop", title="Stop speaking",
              annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False))
    async def stop() -> StopResult:
        """Interrupt what is playing now and drop this session's queued utterances."""
        return await speech().stop()

    return mcp


def _progress(ctx: Context):
    """Relays a host's progress as MCP progress notifications; only ever awaited before the result."""
    async def send(message: str, done: float, total: float | None) -> None:
        try:
            await ctx.report_progress(done, total, message)
        except Exception as exc:  # a client that cannot take progress still gets its result
            log.debug("progress not sent: %s", exc)
    return send


def _with_audio(result: SayResult | DesignVoiceResult, audio: bytes | None, summary: str) -> CallToolResult:
    content: list = [TextContent(type="text", text=summary)]
    if audio is not None:
        content.append(AudioContent(type="audio", data=base64.b64encode(audio).decode(), mime_type="audio/wav"))
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


def _say_summary(result: SayResult) -> str:
    where = {"play": f"on {result.device}" if result.device else "on the speaker",
             "file": f"to {result.file_path}", "audio": "as attached audio"}[result.output]
    parts = [f"Spoke ({result.status}) {where} with {result.backend}/{result.voice}"]
    if result.audio_seconds is not None:
        parts.append(f"{result.audio_seconds:.1f} s of audio")
    if result.time_to_first_audio_ms is not None:
        parts.append(f"first audio after {result.time_to_first_audio_ms:.0f} ms")
    text = ", ".join(parts) + "."
    if result.notes:
        text += " Notes: " + " ".join(result.notes)
    return text


async def _warm_up(state: State) -> None:
    """Starts the default backend's host and the speaker while the agent is still thinking."""
    try:
        family, python = families.installed_family(state.speech.backend, state.settings)
        await state.speech.hosts.get(family.service, python)
        if state.settings.output in ("auto", "play"):
            await state.speech.prepare_speaker()
    except Exception as exc:  # warming is a courtesy: a real call reports the same problem properly
        log.info("warm-up skipped: %s", exc)


def serve() -> None:
    create_server().run("stdio")
