"""The ASGI app of `mcp-tts http`: OpenAI's speech API over the same engine hosts as the MCP server.

Runs in the `mcp-tts http` process (uvicorn). Each request goes through the say tool's own request model
and plan, then `Speech.stream`: the host serves its requests one at a time in arrival order, so clients
of one engine are served fairly. Audio streams as it is made; a failure after the first byte ends the
stream visibly (an SSE error event, or a chunked body cut short), never as silence with 200.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import families
from ..config import Settings
from ..engines.contract.catalog import BACKENDS
from ..errors import EngineFailed, HostError, TTSError
from ..host_client import open_hosts
from ..request import explain_validation
from ..speech import AudioStream, Speech
from ..version import __version__
from ..voices import check_recording, wav_bytes
from .auth import KeyCheck
from .encode import MEDIA_TYPES, Encoder, encoder
from .schemas import (
    MAX_BODY_BYTES,
    OPENAI_MODELS,
    OPENAI_VOICES,
    HTTPProblem,
    SpeechRequest,
    accepted_models,
    resolve_model,
)

log = logging.getLogger("mcp_tts.http")

# what an engine's refusal code means over HTTP
FAILURE_STATUS = {"bad_request": 400, "unknown_backend": 404, "unknown_model": 404, "unknown_voice": 404,
                  "busy": 503, "cancelled": 503, "engine_error": 500}


def create_app(settings: Settings, key: str | None) -> Starlette:
    keys = KeyCheck(key)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        idle = {f.service: settings.idle_timeout for f in families.FAMILIES.values()}
        async with open_hosts(settings.runtime_dir, idle) as hosts, anyio.create_task_group() as tg:
            app.state.speech = Speech(settings, hosts, tg)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    def guarded(handler, open_to_all: bool = False):
        async def endpoint(request: Request) -> Response:
            try:
                if not open_to_all and not keys.allows(request.headers.get("authorization")):
                    raise HTTPProblem(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY'",
                                      code="invalid_api_key")
                return await handler(settings, request.app.state.speech, request)
            except HTTPProblem as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return JSONResponse(exc.body.model_dump(), status_code=exc.status, headers=headers)
        return endpoint

    routes = [Route("/v1/audio/speech", guarded(create_speech), methods=["POST"]),
              Route("/v1/audio/voices", guarded(list_voices), methods=["GET"]),
              Route("/v1/models", guarded(list_models), methods=["GET"]),
              Route("/health", guarded(health, open_to_all=True), methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


# --- routes ---------------------------------------------------------------------------------------------

async def health(settings: Settings, speech: Speech, request: Request) -> Response:
    """For load balancers and `mcp-tts doctor`: open without the key, and telling nothing private."""
    return JSONResponse({"status": "ok", "server": "mcp-tts", "version": __version__})


async def list_models(settings: Settings, speech: Speech, request: Request) -> Response:
    """Installed backends and their published models, OpenAI's list shape; `backend` names ours."""
    installed = families.installed_backends(settings)
    data = []
    for name in installed:
        spec = BACKENDS[name]
        data.append({"id": name, "object": "model", "created": 0, "owned_by": "mcp-tts", "backend": name,
                     "sample_rate": spec.sample_rate, "description": spec.description})
        data += [{"id": m, "object": "model", "created": 0, "owned_by": "mcp-tts", "backend": name,
                  "sample_rate": spec.sample_rate} for m in spec.models]
    data += [{"id": m, "object": "model", "created": 0, "owned_by": "mcp-tts", "backend": settings.backend,
              "sample_rate": BACKENDS[settings.backend].sample_rate} for m in OPENAI_MODELS[:2]]
    return JSONResponse({"object": "list", "data": data})


async def list_voices(settings: Settings, speech: Speech, request: Request) -> Response:
    """Each installed backend's voices, as its host tells them (started to ask, as `mcp-tts voices` does), and
    the saved voices."""
    backend = request.query_params.get("backend")
    if backend is not None and backend not in BACKENDS:
        raise HTTPProblem(404, f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}", "backend",
                          "model_not_found")
    try:
        listing = await speech.list_voices(backend, start_hosts=True)
    except TTSError as exc:
        raise _problem(exc) from None
    backends = {b.backend: {"voices": [v.name for v in b.voices], "models": b.models,
                            "default_voice": BACKENDS[b.backend].default_voice,
                            "sample_rate": BACKENDS[b.backend].sample_rate, "supports": b.supports,
                            "description": b.description}
                for b in listing.backends if b.installed}
    saved = [{"name": v.name, "kind": v.kind, "usable_with": v.usable_with, "description": v.description}
             for v in listing.library]
    default = backend or settings.backend
    flat = [*backends.get(default, {}).get("voices", []), *(v["name"] for v in saved)]
    return JSONResponse({"voices": flat, "backends": backends, "saved": saved, "default_backend": settings.backend})


async def create_speech(settings: Settings, speech: Speech, request: Request) -> Response:
    """OpenAI's `POST /v1/audio/speech`: checked, planned and started before the response begins (a refusal is
    an HTTP error), then streamed."""
    ask = _parse(await _body(request))
    try:
        backend, model = resolve_model(ask.model, ask.task_type, settings.backend)
    except KeyError:
        raise HTTPProblem(404, f"model {ask.model!r} is not served here; models: {', '.join(accepted_models())}",
                          "model", "model_not_found") from None
    if len(ask.input.strip()) > settings.max_text_chars:
        raise HTTPProblem(400, f"input is {len(ask.input.strip())} characters; at most {settings.max_text_chars} "
                               f"are spoken in one request: split it", "input", "string_above_max_length")
    voice = ask.voice
    if voice in OPENAI_VOICES and not _has_voice(speech, backend, voice):
        voice = None  # OpenAI's name, sent by habit: the backend's default voice
    try:
        say = ask.say_request(backend, model, voice)
    except ValidationError as exc:
        raise _invalid(exc) from None
    try:
        families.installed_family(backend, settings)
    except TTSError as exc:
        raise HTTPProblem(503, str(exc), "model", "backend_not_installed") from None
    reference = await _reference(ask, backend, settings) if ask.ref_audio is not None else None
    try:
        stream = await speech.stream(say, reference=reference)
    except TTSError as exc:
        _remove(reference)
        raise _problem(exc) from None
    except BaseException:
        _remove(reference)
        raise
    enc = encoder(ask.response_format, stream.sample_rate)
    headers = {"X-Sample-Rate": str(enc.out_rate), "X-Backend": backend, "X-Model": stream.start.model,
               "X-Voice": stream.start.voice, "X-Utterance-Id": stream.id, "Cache-Control": "no-store"}
    if stream.start.notes:
        headers["X-Notes"] = json.dumps(stream.start.notes, ensure_ascii=True)
    body = partial(_audio, stream, enc, reference)
    if ask.sse:
        return EventSourceResponse(_events(body), headers=headers)
    return AudioResponse(body(), media_type=MEDIA_TYPES[ask.response_format], headers=headers)


# --- the request ------------------------------------------------------------------------------------------

async def _body(request: Request) -> bytes:
    """The body, refused (413) past MAX_BODY_BYTES whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    too_big = HTTPProblem(413, f"the request body is over {MAX_BODY_BYTES // 2**20} MB; a reference recording "
                               f"of 2-30 s fits well within it", code="request_too_large")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_big
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise too_big
    return bytes(body)


def _parse(body: bytes) -> SpeechRequest:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise HTTPProblem(400, f"the body is not JSON ({exc}); send a JSON object such as "
                               f'{{"model": "tts-1", "input": "Hello", "voice": "alloy"}}',
                          code="invalid_json") from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, f"the body is JSON {type(data).__name__}, not an object with model, input and voice",
                          code="invalid_json")
    try:
        return SpeechRequest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> HTTPProblem:
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return HTTPProblem(400, explain_validation(exc), param, "invalid_value")


def _has_voice(speech: Speech, backend: str, voice: str) -> bool:
    return voice in BACKENDS[backend].presets or speech.library.exists(voice)


async def _reference(ask: SpeechRequest, backend: str, settings: Settings) -> dict:
    """ref_audio checked as a recording to clone from (as add_voice checks one), written privately for the
    host to read, with ref_text as its transcript; removed when the request ends."""
    if not BACKENDS[backend].capabilities.clone:
        cloning = ", ".join(n for n, b in BACKENDS.items() if b.capabilities.clone)
        raise HTTPProblem(422, f"ref_audio asks to clone a voice, which {backend!r} cannot; cloning backends: "
                               f"{cloning}", "ref_audio", "cloning_unsupported")
    raw = ask.ref_audio.strip()
    if raw.startswith(("http://", "https://", "file:")):
        raise HTTPProblem(400, "ref_audio must be the recording itself, base64-encoded (plain, or a data: URI); "
                               "this server fetches no URLs", "ref_audio", "invalid_value")
    if raw.startswith("data:"):
        raw = raw.partition(",")[2]
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPProblem(400, "ref_audio is not base64: send the recording's bytes base64-encoded (plain, or "
                               "as data:audio/wav;base64,...)", "ref_audio", "invalid_value") from None
    folder = settings.data_dir / "cache" / "http-references"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    upload, path = folder / f"{uuid.uuid4().hex}.upload", folder / f"{uuid.uuid4().hex}.wav"

    def check() -> None:
        fd = os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as fh:
            fh.write(data)
        try:
            samples, rate = check_recording(upload)
        finally:
            upload.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as fh:
            fh.write(wav_bytes(samples, rate))

    try:
        await anyio.to_thread.run_sync(check)
    except TTSError as exc:
        raise HTTPProblem(400, f"ref_audio: {str(exc).replace(repr(str(upload)), 'the recording')}", "ref_audio",
                          "invalid_value") from None
    return {"reference_audio": str(path), "transcript": (ask.ref_text or "").strip(), "voice_name": "ref_audio",
            "prompt_cache_dir": str(settings.data_dir / "cache" / "clone-prompts")}


def _remove(reference: dict | None) -> None:
    if reference is not None:
        Path(reference["reference_audio"]).unlink(missing_ok=True)


def _problem(exc: TTSError) -> HTTPProblem:
    if isinstance(exc, EngineFailed):
        param = "voice" if exc.code == "unknown_voice" else "model" if exc.code.startswith("unknown") else None
        return HTTPProblem(FAILURE_STATUS.get(exc.code, 500), str(exc), param, exc.code)
    if isinstance(exc, HostError):
        return HTTPProblem(503, str(exc), code="engine_unavailable")
    message = str(exc)
    param = next((p for p in ("voice", "model", "language", "instruct", "speed", "text") if message.startswith(p)),
                 None)
    if param == "text":  # the say request's text is this request's input
        param, message = "input", "input" + message[len("text"):]
    return HTTPProblem(400, message, param, "invalid_value")


# --- the response -----------------------------------------------------------------------------------------

async def _audio(stream: AudioStream, enc: Encoder, reference: dict | None) -> AsyncIterator[bytes]:
    """The encoded audio as it comes; the host's work is cancelled if the listener leaves first."""
    try:
        head = enc.begin()
        if head:
            yield head
        async for samples in stream.chunks():
            data = enc.encode(samples)
            if data:
                yield data
        tail = await anyio.to_thread.run_sync(enc.finish)
        if tail:
            yield tail
    finally:
        await stream.close()
        _remove(reference)


async def _events(body) -> AsyncIterator[dict]:
    """vLLM-Omni's and OpenAI's events: speech.audio.delta (base64 audio), then speech.audio.done; a
    failure is an error event, in OpenAI's error shape."""
    try:
        async with aclosing(body()) as chunks:  # closed at once when the client leaves: the engine's work ends
            async for data in chunks:
                yield {"data": json.dumps({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})}
    except TTSError as exc:
        log.warning("speech failed mid-stream: %s", exc)
        problem = _problem(exc)
        yield {"data": json.dumps({"type": "error", **problem.body.model_dump()})}
        return
    yield {"data": json.dumps({"type": "speech.audio.done"})}


class AudioResponse(StreamingResponse):
    """A chunked audio body that stops, and cancels the host's work, as soon as the client disconnects
    (Starlette, under ASGI 2.4, would notice only at the next chunk it sends). A failure after the first
    byte ends the body without its last chunk, which a client sees as a truncated response."""

    async def __call__(self, scope, receive, send) -> None:
        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def respond() -> None:
            try:
                await self.stream_response(send)
            except TTSError as exc:
                log.warning("speech failed mid-stream, the body is cut short: %s", exc)
                raise
            except OSError:
                pass  # the client went away
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await respond()
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # not left to the garbage collector: the engine's work ends now
