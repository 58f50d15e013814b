"""Remote engines: an OpenAI-compatible speech server (another `mcp-tts http`, vLLM-Omni, ...) as an engine
of this MCP server, its backends offered as `remote:<backend>`.

Runs in the server process. A remote utterance is fetched as 16-bit PCM over HTTP and handed to `Speech`
in the messages a host would stream (AudioStart, AudioChunk, AudioEnd), so it plays through the local
speaker queue like any host's audio: agents still never talk over each other, and `stop` cancels it (the
HTTP stream is closed, which cancels the remote's work).
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import numpy as np
from anyio.abc import TaskGroup

from .engines.contract.protocol import SAMPLE_FORMAT, AudioChunk, AudioEnd, AudioStart, Cancel, Message
from .errors import HostError, TTSError

PREFIX = "remote:"
DEFAULT_RATE = 24000  # OpenAI's pcm: 24 kHz, 16-bit mono, when a server does not say
CHUNK_BYTES = 8192  # PCM bytes per chunk handed on (~0.17 s at 24 kHz)
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# a speech request waits for the remote's first audio, which may follow a model load there (~40 s cold on a GPU)
SPEECH_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


def is_remote(backend: str | None) -> bool:
    return backend is not None and backend.startswith(PREFIX)


def remote_name(backend: str) -> str:
    """The remote's own name for `remote:<name>`."""
    return backend[len(PREFIX):]


class RemoteError(HostError):
    """The remote could not be reached, refused, or went away mid-stream."""


@dataclass
class RemoteBackend:
    """One backend (an mcp-tts remote) or model (another server) the remote offers."""

    name: str
    description: str = ""
    models: list[str] = field(default_factory=list)
    voices: list[str] = field(default_factory=list)
    sample_rate: int | None = None
    supports: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemoteCatalog:
    backends: dict[str, RemoteBackend]
    mcp_tts: bool  # the remote is another mcp-tts, which takes our extensions (raw, Chatterbox settings)


class Remote:
    """The remote at `url` (its base, with or without /v1), with its key."""

    def __init__(self, url: str, key: str | None) -> None:
        base = url.rstrip("/")
        self.url = base[:-3] if base.endswith("/v1") else base
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._catalog: RemoteCatalog | None = None
        self._http: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """One client for the server's life: its connections stay open between utterances, so a `say`
        does not pay a new TCP (and TLS) handshake to the remote each time."""
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=TIMEOUT)
        return self._http

    async def _get(self, path: str) -> dict:
        try:
            response = await self.client().get(path)
        except httpx.HTTPError as exc:
            raise RemoteError(f"the remote {self.url} did not answer ({_describe(exc)}); check "
                              f"MCP_TTS_REMOTE_URL and that its server runs") from None
        _raise_for(response, self.url)
        return response.json()

    async def health(self) -> tuple[dict, float]:
        """Its /health answer and the round trip in ms (a server without /health: its /v1/models)."""
        started = time.perf_counter()
        try:
            answer = await self._get("/health")
        except RemoteError as exc:
            if "404" not in str(exc):
                raise
            answer = {"status": "ok", "models": len((await self._get("/v1/models")).get("data", []))}
        return answer, (time.perf_counter() - started) * 1000

    async def catalog(self, fresh: bool = False) -> RemoteCatalog:
        """What it offers: an mcp-tts remote's backends with their voices, else the models it lists."""
        if self._catalog is not None and not fresh:
            return self._catalog
        models = (await self._get("/v1/models")).get("data", [])
        try:
            voices = await self._get("/v1/audio/voices")
        except RemoteError:
            voices = {}
        if isinstance(voices.get("backends"), dict):  # another mcp-tts
            backends = {name: RemoteBackend(name, entry.get("description", ""), list(entry.get("models", [])),
                                            list(entry.get("voices", [])), entry.get("sample_rate"),
                                            dict(entry.get("supports", {})))
                        for name, entry in voices["backends"].items()}
            self._catalog = RemoteCatalog(backends, mcp_tts=True)
        else:
            flat = [v if isinstance(v, str) else v.get("name", v.get("id", "")) for v in voices.get("voices", [])]
            backends = {m["id"]: RemoteBackend(m["id"], f"model {m['id']} of {self.url}", [m["id"]], flat)
                        for m in models if isinstance(m, dict) and m.get("id")}
            self._catalog = RemoteCatalog(backends, mcp_tts=False)
        return self._catalog

    async def backend(self, backend: str) -> RemoteBackend:
        catalog = await self.catalog()
        name = remote_name(backend)
        if name not in catalog.backends:
            catalog = await self.catalog(fresh=True)
        if name not in catalog.backends:
            offered = ", ".join(PREFIX + n for n in catalog.backends) or "none"
            raise TTSError(f"the remote {self.url} has no backend {name!r}; its backends: {offered}")
        return catalog.backends[name]

    async def open(self, utt_id: str, plan, task_group: TaskGroup) -> RemoteReply:
        """Starts fetching `plan`'s audio (a SayPlan for a remote:<backend>); its frames come from the reply."""
        catalog = await self.catalog()
        body = await anyio.to_thread.run_sync(request_body, plan, catalog.mcp_tts)
        reply = RemoteReply(utt_id, self, body)
        task_group.start_soon(reply.run)
        return reply


def request_body(plan, mcp_tts: bool) -> dict[str, Any]:
    """The speech request for a plan: a saved voice's recording travels with it (ref_audio, ref_text)."""
    name = remote_name(plan.backend)
    body: dict[str, Any] = {"model": plan.model or name, "input": plan.text, "response_format": "pcm",
                            "speed": plan.speed}
    if plan.voice:
        body["voice"] = plan.voice
    if plan.language:
        body["language"] = plan.language
    if plan.instruct:
        body["instructions"] = plan.instruct
    params = dict(plan.voice_params)
    if params.get("reference_audio"):
        audio = Path(params["reference_audio"]).read_bytes()
        body["ref_audio"] = "data:audio/wav;base64," + base64.b64encode(audio).decode()
        if params.get("transcript"):
            body["ref_text"] = params["transcript"]
    elif any(k not in ("exaggeration", "cfg_weight", "temperature") for k in params):
        raise TTSError("the saved voice is a set of this machine's espeak settings, which a remote cannot take; use "
                       "one of the remote's voices (list_voices) or a recorded voice")
    if mcp_tts:
        body["raw"] = True  # shaped for the ear here already
        body.update({k: params[k] for k in ("exaggeration", "cfg_weight", "temperature") if k in params})
    return body


class _RemoteConnection:
    """Where an utterance's Cancel goes: it closes the HTTP stream (the remote then cancels its work)."""

    def __init__(self, reply: RemoteReply) -> None:
        self.reply = reply
        self.pid = 0

    async def send(self, message: Message, payload: bytes = b"") -> None:
        if isinstance(message, Cancel):
            self.reply.cancel()


class RemoteReply:
    """One remote utterance, streamed by `run` (in the server's task group) into host-shaped frames that
    `next` hands out; the first is AudioStart, with a note of the remote and its round trip."""

    def __init__(self, utt_id: str, remote: Remote, body: dict[str, Any]) -> None:
        self.id, self.remote, self.body = utt_id, remote, body
        self.conn = _RemoteConnection(self)
        self._send, self._receive = anyio.create_memory_object_stream[tuple[Message, bytes] | BaseException](
            math.inf)
        self._scope = anyio.CancelScope()
        self.round_trip_ms: float | None = None

    def cancel(self) -> None:
        self._scope.cancel()

    async def next(self) -> tuple[Message, bytes]:
        try:
            item = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise RemoteError(f"the stream from the remote {self.remote.url} ended early") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._scope.cancel()
        self._receive.close()

    async def run(self) -> None:
        url, sent = self.remote.url, time.perf_counter()
        try:
            with self._scope:
                client = self.remote.client()
                request = client.build_request("POST", "/v1/audio/speech", json=self.body, timeout=SPEECH_TIMEOUT)
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise RemoteError(f"the remote {url} did not answer ({_describe(exc)}); check "
                                      f"MCP_TTS_REMOTE_URL and that its server runs") from None
                try:
                    if response.status_code != 200:
                        await response.aread()
                        _raise_for(response, url)
                    await self._relay(response, sent)
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
        except TTSError as exc:
            self._put(exc)
        except Exception as exc:  # runs in the server's task group: nothing may escape into it
            self._put(RemoteError(f"the remote {url} answered what could not be read ({_describe(exc)})"))
        finally:
            self._send.close()

    async def _relay(self, response: httpx.Response, sent: float) -> None:
        url = self.remote.url
        self.round_trip_ms = round((time.perf_counter() - sent) * 1000, 1)
        rate = int(response.headers.get("x-sample-rate") or DEFAULT_RATE)
        name = self.body["model"]
        self._put((AudioStart(id=self.id, sample_rate=rate, model=response.headers.get("x-model", name),
                              voice=response.headers.get("x-voice", self.body.get("voice") or "default"),
                              notes=[f"spoken by the remote {url} ({name}), {self.round_trip_ms:.0f} ms to its "
                                     f"answer"]), b""))
        pending, seq, samples = b"", 0, 0
        try:
            async for data in response.aiter_raw(CHUNK_BYTES):
                pending += data
                whole = len(pending) - len(pending) % 2
                if whole:
                    pcm = np.frombuffer(pending[:whole], dtype="<i2").astype(SAMPLE_FORMAT) / np.float32(32768)
                    pending = pending[whole:]
                    self._put((AudioChunk(id=self.id, seq=seq), pcm.astype(SAMPLE_FORMAT).tobytes()))
                    seq, samples = seq + 1, samples + len(pcm)
        except httpx.HTTPError as exc:
            raise RemoteError(f"speech cut off: the remote {url} went away mid-stream ({_describe(exc)}); "
                              f"{samples / rate:.1f} s of audio had arrived") from None
        self._put((AudioEnd(id=self.id, samples=samples, synth_seconds=time.perf_counter() - sent), b""))

    def _put(self, item) -> None:
        try:
            self._send.send_nowait(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # nobody reads any more


def _raise_for(response: httpx.Response, url: str) -> None:
    """A refusal as the remote worded it (OpenAI's error shape), naming the remote and the status."""
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except Exception:
        message = response.text[:300] or response.reason_phrase
    if response.status_code == 401:
        message += " (set MCP_TTS_REMOTE_API_KEY to the remote's key)"
    raise RemoteError(f"the remote {url} refused ({response.status_code}): {message}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
