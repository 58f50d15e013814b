"""The MCP stdio server: thin tools over `Speech`, one server per agent session.

The handshake is answered at once; the default backend's host and the speaker are warmed in the
background afterwards, so the first `say` is fast without making the client wait to connect.
"""

from __future__ import annotations

import base64
import functools
import inspect
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import AudioContent, CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from . import families, paths
from .config import Settings
from .errors import TTSError
from .host_client import open_hosts
from .models import (
    AddVoiceResult,
    DesignVoiceResult,
    ListVoicesResult,
    PlaybackResult,
    SayResult,
    StopResult,
    SwitchBackendResult,
)
from .playback import control
from .request import SayRequest, explain_validation
from .speech import AUDIO_REPLY_MIME, Speech
from .stdio import stdio_transport
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
with output="audio", up to about 3 minutes), how long it is, and how quickly it started. Utterances from all agents on
the machine queue and never overlap; call `stop` to silence your queued speech."""

VOICE_NAME = "name to save it under: letters, digits, '_', '-', '.'"


@dataclass
class State:
    settings: Settings
    speech: Speech


# --- tools: module-level functions, registered by create_server ------------------------------------

TOOLS: list[tuple[Callable[..., Awaitable[Any]], dict[str, Any]]] = []  # (tool, how it is listed)


def tool(name: str, title: str, annotations: ToolAnnotations, description: str | None = None):
    """Lists a function as an MCP tool (its docstring is its description unless one is given), with the
    one error translation every tool has: what the caller can act on becomes a tool error."""
    def register(func):
        @functools.wraps(func)
        async def call(*args, **kwargs):
            try:
                return await func(*args, **kwargs)
            except TTSError as exc:  # HostError and EngineFailed too: a host that failed or went away
                raise ToolError(str(exc)) from None
            except ValidationError as exc:
                raise ToolError(explain_validation(exc)) from None
        listing = {"name": name, "title": title, "description": description or inspect.cleandoc(func.__doc__ or ""),
                   "annotations": annotations}
        TOOLS.append((call, listing))
        return call
    return register


def request_parameters(model: type[BaseModel], hidden: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """A request model's fields as a tool's keyword parameters: its schema is the model's, written once."""
    params = []
    for name, info in model.model_fields.items():
        if name in hidden:
            continue
        annotation = Annotated[(info.annotation, *info.metadata, Field(description=info.description))]
        default = inspect.Parameter.empty if info.is_required() else info.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default))
    return params


def speech_of(ctx: Context) -> Speech:
    return ctx.request_context.lifespan_context.speech


def _writes(idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=idempotent,
                           open_world_hint=False)


ROOTS_TIMEOUT = 5.0  # seconds a client has to list its roots


async def client_folders(ctx: Context) -> paths.Folders:
    """The folders this call may read and write (paths.py): the client's MCP roots, asked at each call that
    names a path (they change), or the working directory where it declares none; with the data dir and
    MCP_TTS_ALLOWED_DIRS. A client that declares roots and cannot list them gets no roots at all."""
    settings = ctx.request_context.lifespan_context.settings
    capabilities = ctx.session.client_capabilities
    if capabilities is None or capabilities.roots is None:
        return paths.for_client(settings, None)
    try:
        with warnings.catch_warnings():  # deprecated by the 2026-07-28 protocol, yet what clients send today
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            listing = ctx.session.list_roots()
        with anyio.fail_after(ROOTS_TIMEOUT):
            roots = (await listing).roots
    except Exception as exc:
        log.warning("the client's roots could not be listed: %s", exc or type(exc).__name__)
        return paths.for_client(settings, [], note=f"the client declares MCP roots but did not list them: "
                                                   f"{exc or type(exc).__name__}")
    return paths.for_client(settings, [str(root.uri) for root in roots])


@tool("say", "Speak aloud", _writes(), description=SAY_DESCRIPTION)
async def say(ctx: Context, **arguments: Any) -> Annotated[CallToolResult, SayResult]:
    folders = await client_folders(ctx) if arguments.get("file_path") else None
    result, audio = await speech_of(ctx).say(SayRequest(**arguments), _progress(ctx), folders)
    return _with_audio(result, audio, _say_summary(result))


# the say tool's parameters are SayRequest's fields: the SDK reads the schema from this signature
say.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
     *request_parameters(SayRequest, hidden=SayRequest.TOOL_HIDDEN)],
    return_annotation=Annotated[CallToolResult, SayResult])
say.__annotations__ = {p.name: p.annotation for p in say.__signature__.parameters.values()}  # type: ignore[attr-defined]


@tool("list_voices", "List voices", ToolAnnotations(read_only_hint=True, open_world_hint=False))
async def list_voices(
    ctx: Context,
    backend: Annotated[str | None, Field(max_length=64, description="only this backend, with all its voices")] = None,
    detail: Annotated[bool, Field(description="every voice of every backend (long); by default a few each")] = False,
) -> Annotated[CallToolResult, ListVoicesResult]:
    """The backends (installed or not, with their models), a few of each one's voices and how many it has,
    and the user's saved voices with the backends that can use each. Ask for one `backend` to see all of
    its voices. Backends whose family is not installed are listed with their install command."""
    result = await speech_of(ctx).list_voices(backend)
    if backend is None and not detail:
        result = result.short()
    return CallToolResult(content=[TextContent(type="text", text=result.summary())],
                          structured_content=result.model_dump(mode="json", exclude_none=True))


@tool("design_voice", "Design a voice from a description", _writes())
async def design_voice(
    ctx: Context,
    description: Annotated[str, Field(max_length=2000,
                                      description="the voice in words: gender, age, pitch, pace, accent")],
    name: Annotated[str, Field(max_length=200, description=VOICE_NAME)],
    sample_text: Annotated[str | None, Field(max_length=5000, description="what the returned sample says")] = None,
    backend: Annotated[str | None, Field(max_length=64, description="'builtin' (rule-based, instant) or "
                                                                    "'qwen-design' (neural)")] = None,
) -> Annotated[CallToolResult, DesignVoiceResult]:
    """Create a named voice from a text description, save it in the voice library and return a sample.
    Use the name as `voice` in later `say` calls."""
    result, sample = await speech_of(ctx).design_voice(description, name, sample_text, backend, _progress(ctx))
    attached = "A sample is attached." if sample else f"Its sample, too long to attach, is at {result.sample_path}."
    return _with_audio(result, sample, f"Saved voice {result.name!r} ({result.backend}). {attached}")


@tool("add_voice", "Save a voice from a recording", _writes())
async def add_voice(
    ctx: Context,
    name: Annotated[str, Field(max_length=200, description=VOICE_NAME)],
    audio_path: Annotated[str, Field(max_length=4096, description="a recording of one speaker, 2-30 s, 16 kHz or "
                                                                  "more (WAV, FLAC, OGG, MP3)")],
    transcript: Annotated[str, Field(max_length=2000, description="exactly what the recording says")],
) -> AddVoiceResult:
    """Save a cloneable voice from the user's own recording, for the cloning backends (qwen-base,
    chatterbox). Use the name as `voice` in `say`."""
    return await speech_of(ctx).add_voice(name, audio_path, transcript, await client_folders(ctx))


@tool("switch_backend", "Switch the default backend", _writes(idempotent=True))
async def switch_backend(
    ctx: Context,
    backend: Annotated[str, Field(max_length=64, description="backend name, see list_voices")],
    model: Annotated[str | None, Field(max_length=4096, description="model of that backend; default: its "
                                                                   "first")] = None,
) -> SwitchBackendResult:
    """Make a backend the default for later `say` calls in this session, and load its model. Reports
    whether it was a hot swap inside a running engine host or a new host, and how long it took."""
    return await speech_of(ctx).switch_backend(backend, model, _progress(ctx))


@tool("stop", "Stop speaking", _writes(idempotent=True))
async def stop(ctx: Context) -> StopResult:
    """Interrupt what is playing now and drop this session's queued utterances."""
    return await speech_of(ctx).stop()


@tool("pause", "Pause speech", _writes(idempotent=True))
async def pause(ctx: Context) -> PlaybackResult:
    """Pause the machine's speech where it is, every agent's: the utterance playing keeps its place and
    the queue behind it waits, until `resume`. Only when the person asks for it."""
    return await control(speech_of(ctx).hosts, "pause")


@tool("resume", "Resume speech", _writes(idempotent=True))
async def resume(ctx: Context) -> PlaybackResult:
    """Resume paused speech from the sample where it stopped; the queue behind it follows."""
    return await control(speech_of(ctx).hosts, "resume")


@tool("skip", "Skip the current utterance", _writes())
async def skip(ctx: Context) -> PlaybackResult:
    """End the utterance playing now, whichever agent's; the next one in the queue follows."""
    return await control(speech_of(ctx).hosts, "skip")


class _Server(MCPServer):
    """MCPServer, with arguments the SDK refused (its validation against a tool's schema, before the tool
    runs) explained as our own refusals are, one plain sentence per argument, not pydantic's text."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            refused = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(refused, ValidationError):
                raise
            raise ToolError(f"Error executing tool {name}: {explain_validation(refused)}") from refused


def create_server(settings: Settings | None = None) -> MCPServer:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[State]:
        idle = {"speaker": settings.speaker_idle_timeout}
        idle.update({f.service: settings.idle_timeout for f in families.FAMILIES.values()})
        async with open_hosts(settings.runtime_dir, idle) as hosts, anyio.create_task_group() as tg:
            state = State(settings, Speech(settings, hosts, tg))
            tg.start_soon(_warm_up, state)
            try:
                yield state
            finally:
                tg.cancel_scope.cancel()

    mcp = _Server("mcp-tts", title="mcp-tts: speech for AI agents", version=__version__,
                    instructions=INSTRUCTIONS, lifespan=lifespan)
    for func, listing in TOOLS:
        mcp.add_tool(func, **listing)
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
        content.append(AudioContent(type="audio", data=base64.b64encode(audio).decode(), mime_type=AUDIO_REPLY_MIME))
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
    anyio.run(serve_stdio, create_server())


async def serve_stdio(mcp: MCPServer) -> None:
    """`mcp` over this process's stdio, through our transport (mcp_tts.stdio), which answers every
    request, where MCPServer.run("stdio") would leave malformed ones unanswered."""
    server = mcp._lowlevel_server  # no public handle to it: MCPServer.run_stdio_async reads it the same way
    async with stdio_transport() as (read, write):
        await server.run(read, write, server.create_initialization_options())
