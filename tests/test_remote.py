"""Remote engines: an MCP server (the real client over stdio) whose MCP_TTS_REMOTE_URL is another mcp-tts's
`mcp-tts http`. The remote runs the real builtin host, or, where a stream must be slow enough to cut, a
scripted engine host published in its runtime dir (the remote process talks to it over its real socket).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import anyio
import numpy as np
import pytest
import soundfile as sf

from mcp_tts.engines.contract.protocol import Cancel, Synthesize
from tests.support.homes import server_env, stop_hosts
from tests.support.http_server import free_port, http_process
from tests.support.mcp_client import MCP_TTS, audio_of, error_text, mcp_session
from tests.support.scripted import Script, ScriptedEngine, sine

pytestmark = pytest.mark.anyio

KEY = "remote-key-42"


@pytest.fixture(scope="module")
def remote(shared_home):
    """`mcp-tts http` with the real builtin host, in a home of its own (the MCP server's is another)."""
    env = server_env(shared_home, None, MCP_TTS_API_KEY=KEY)
    with http_process(env, log=shared_home / "http.log") as (url, _):
        yield url


def local_env(home: Path, url: str | None, key: str | None = KEY, pulse: dict | None = None) -> dict[str, str]:
    extra = {"MCP_TTS_REMOTE_URL": url} if url else {}
    if key:
        extra["MCP_TTS_REMOTE_API_KEY"] = key
    return server_env(home, pulse, **extra)


async def test_remote_backends_are_listed_switched_to_and_spoken(remote, home):
    async with mcp_session(local_env(home, remote)) as session:
        listing = (await session.call_tool("list_voices", {})).structured_content
        entry = next(b for b in listing["backends"] if b["backend"] == "remote:builtin")
        assert entry["source"] == "remote" and entry["installed"] and remote in entry["description"]
        alone = (await session.call_tool("list_voices", {"backend": "remote:builtin"})).structured_content
        assert "en-gb" in [v["name"] for v in alone["backends"][0]["voices"]]

        result = await session.call_tool("say", {"text": "Spoken on the other machine.", "backend": "remote:builtin",
                                                 "voice": "en-gb", "output": "audio"})
        said = result.structured_content
        assert not result.is_error, result.content
        assert said["remote"] == remote and said["remote_round_trip_ms"] > 0
        assert said["backend"] == "remote:builtin" and said["voice"] == "en-gb"
        assert any(f"spoken by the remote {remote}" in note for note in said["notes"])
        audio, rate = audio_of(result)
        assert rate == 22050 and len(audio) / rate > 1.0 and float(np.abs(audio).max()) > 0.05

        switched = await session.call_tool("switch_backend", {"backend": "remote:builtin"})
        assert switched.structured_content["switch"] == "remote"
        saved = (await session.call_tool("say", {"text": "Now by default.", "output": "file"})).structured_content
        assert saved["backend"] == "remote:builtin" and saved["status"] == "saved"
        data, rate = sf.read(saved["file_path"])
        assert rate == 22050 and len(data) / rate > 0.5

        unknown = await session.call_tool("switch_backend", {"backend": "remote:qwen-custom"})
        assert "has no backend 'qwen-custom'; its backends: remote:builtin" in error_text(unknown)


async def test_a_saved_voice_travels_with_the_request(remote, home, tmp_path):
    recording = tmp_path / "me.wav"
    sf.write(recording, sine(16000 * 4, 16000), 16000)
    env = {**local_env(home, remote), "MCP_TTS_ALLOWED_DIRS": str(tmp_path)}
    async with mcp_session(env) as session:
        added = await session.call_tool("add_voice", {"name": "me", "audio_path": str(recording),
                                                      "transcript": "A test recording of a sine."})
        assert not added.is_error, added.content
        result = await session.call_tool("say", {"text": "In my voice.", "backend": "remote:builtin", "voice": "me",
                                                 "output": "audio"})
    # the remote's builtin cannot clone: its refusal names the recording it was sent
    assert "refused (422): ref_audio asks to clone a voice, which 'builtin' cannot" in error_text(result)


async def test_wrong_key_and_a_remote_that_is_down_are_clear_and_local_speech_goes_on(remote, home):
    async with mcp_session(local_env(home, remote, key="wrong")) as session:
        refused = await session.call_tool("say", {"text": "hi", "backend": "remote:builtin", "output": "audio"})
        assert "refused (401)" in error_text(refused) and "MCP_TTS_REMOTE_API_KEY" in error_text(refused)
    down = f"http://127.0.0.1:{free_port()}"
    async with mcp_session(local_env(home, down)) as session:
        failed = await session.call_tool("say", {"text": "hi", "backend": "remote:builtin", "output": "audio"})
        assert f"the remote {down} did not answer" in error_text(failed)
        listing = (await session.call_tool("list_voices", {})).structured_content
        assert any(down in problem for problem in listing["problems"])
        assert "builtin" in [b["backend"] for b in listing["backends"]]
        local = await session.call_tool("say", {"text": "Still speaking here.", "output": "audio"})
        assert not local.is_error and audio_of(local)[0].size > 0


def test_doctor_shows_the_remote_its_health_and_round_trip(remote, home):
    shown = subprocess.run([MCP_TTS, "doctor"], env=local_env(home, remote), capture_output=True, text=True,
                           timeout=60)
    line = next(line for line in shown.stdout.splitlines() if line.startswith("remote:"))
    assert re.fullmatch(rf"remote: {re.escape(remote)} \(mcp-tts [0-9.]+\): ok, \d+ ms round trip; backends "
                        rf"remote:builtin", line), line
    down = f"http://127.0.0.1:{free_port()}"
    failed = subprocess.run([MCP_TTS, "doctor"], env=local_env(home, down), capture_output=True, text=True,
                            timeout=60)
    assert failed.returncode == 1 and f"remote: {down}: FAILED (the remote {down} did not answer" in failed.stdout


async def test_remote_speech_plays_through_the_local_speaker(remote, home, pulse):
    async with mcp_session(local_env(home, remote, pulse=pulse)) as session:
        result = await session.call_tool("say", {"text": "Through the local speaker.", "backend": "remote:builtin",
                                                 "output": "play", "wait": "end"})
    said = result.structured_content
    assert not result.is_error, result.content
    assert said["status"] == "played" and said["output"] == "play" and said["device"]
    assert said["ended_clock"] > said["started_clock"] and said["remote"] == remote


# --- a remote whose engine is slow enough to stop or to kill mid-stream ------------------------------------

@pytest.fixture
async def slow_remote():
    """`mcp-tts http` in a home whose builtin host is a scripted engine of this test (its runtime dir is
    the remote's); yields (url, engine, process)."""
    root = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    (root / "run").mkdir(mode=0o700)
    (root / "data").mkdir()
    try:
        async with ScriptedEngine(root / "run") as engine:
            engine.default = Script(chunks=500, chunk_samples=1600, sample_rate=16000, pause=0.02)
            env = server_env(root, None, MCP_TTS_API_KEY=KEY)
            with http_process(env) as (url, proc):  # its /health is answered before it needs the host
                yield url, engine, proc
    finally:
        stop_hosts(root / "run")
        shutil.rmtree(root, ignore_errors=True)


async def until(condition, seconds: float = 20) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.02)


async def test_stop_cancels_the_remote_work(slow_remote, home):
    url, engine, _ = slow_remote
    async with mcp_session(local_env(home, url)) as session:
        started = await session.call_tool("say", {"text": "a long remote story", "backend": "remote:builtin",
                                                  "output": "file", "wait": "none"})
        assert not started.is_error, started.content
        await until(lambda: engine.of(Synthesize))
        stopped = await session.call_tool("stop", {})
        assert stopped.structured_content["stopped"] == 1
        await until(lambda: engine.of(Cancel))  # the closed HTTP stream reached the remote's engine
        assert engine.of(Cancel)[0].id == engine.of(Synthesize)[0].id


@pytest.mark.parametrize("output", ["audio", "play"])
async def test_a_remote_killed_mid_stream_is_a_clear_error_and_the_server_goes_on(slow_remote, home, pulse, output):
    url, engine, proc = slow_remote
    async with mcp_session(local_env(home, url, pulse=pulse if output == "play" else None)) as session:
        async with anyio.create_task_group() as tg:
            outcome = {}

            async def speak() -> None:
                outcome["result"] = await session.call_tool("say", {"text": "a long remote story", "output": output,
                                                                    "wait": "end", "backend": "remote:builtin"})
            tg.start_soon(speak)
            await until(lambda: engine.of(Synthesize))
            await anyio.sleep(0.3)  # some audio on its way (and, with play, playing)
            os.kill(proc.pid, signal.SIGKILL)
        message = error_text(outcome["result"])
        assert f"speech cut off: the remote {url} went away mid-stream" in message
        local = await session.call_tool("say", {"text": "The local engine still speaks.", "output": output,
                                                "wait": "end"})
        assert not local.is_error, local.content
        if output == "play":  # the local speaker is unharmed: the next utterance plays whole
            assert local.structured_content["status"] == "played"
        else:
            assert audio_of(local)[0].size > 0


async def test_a_remote_backend_as_the_default_setting(remote, home):
    async with mcp_session({**local_env(home, remote), "MCP_TTS_BACKEND": "remote:builtin"}) as session:
        said = await session.call_tool("say", {"text": "By default from afar.", "output": "audio"})
    assert not said.is_error, said.content
    assert said.structured_content["backend"] == "remote:builtin" and said.structured_content["remote"] == remote


# --- another OpenAI-compatible server as the remote --------------------------------------------------------

def openai_peer(received: list[dict]):
    """A scripted peer speaking OpenAI's speech API as OpenAI does: it lists models, has no voices
    endpoint, refuses fields it does not know, and answers pcm at 24 kHz without saying the rate."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    known = {"model", "input", "voice", "response_format", "speed", "instructions"}

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "openai"}
                                                        for m in ("tts-1", "gpt-4o-mini-tts")]})

    async def speech(request):
        body = await request.json()
        received.append(body)
        unknown = set(body) - known
        if unknown:
            return JSONResponse({"error": {"message": f"Unrecognized request argument supplied: {sorted(unknown)[0]}",
                                           "type": "invalid_request_error", "param": None, "code": None}}, 400)
        return Response((sine(24000, 24000) * 32767).astype("<i2").tobytes(), media_type="audio/pcm")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/audio/speech", speech, methods=["POST"])])


async def test_another_openai_compatible_server_offers_its_models(home):
    from tests.support.http_server import uvicorn_app

    received: list[dict] = []
    async with uvicorn_app(openai_peer(received)) as url:
        async with mcp_session(local_env(home, url + "/v1", key="sk-test")) as session:
            listing = (await session.call_tool("list_voices", {})).structured_content
            assert {"remote:tts-1", "remote:gpt-4o-mini-tts"} <= {b["backend"] for b in listing["backends"]}
            said = await session.call_tool("say", {"text": "From **another** server.", "voice": "alloy",
                                                   "backend": "remote:gpt-4o-mini-tts", "output": "audio"})
    assert not said.is_error, said.content
    audio, rate = audio_of(said)
    assert rate == 24000 and len(audio) == 24000  # OpenAI's pcm rate, as the server did not state one
    assert received == [{"model": "gpt-4o-mini-tts", "input": "From another server.", "response_format": "pcm",
                         "speed": 1.0, "voice": "alloy"}]  # shaped here, and none of our extensions


def test_the_command_line_speaks_and_lists_through_the_remote(remote, home, tmp_path):
    env = local_env(home, remote)
    out = tmp_path / "remote.wav"
    said = subprocess.run([MCP_TTS, "say", "Written on the other machine.", "-b", "remote:builtin", "-v", "en-gb",
                           "-o", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert said.returncode == 0, said.stderr
    assert said.stdout.startswith("saved:") and "remote:builtin/en-gb" in said.stdout
    assert f"spoken by the remote {remote}" in said.stdout
    assert sf.info(out).samplerate == 22050 and sf.info(out).duration > 0.5
    listed = subprocess.run([MCP_TTS, "voices", "-b", "remote:builtin"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0 and listed.stdout.startswith("remote:builtin (installed)"), listed.stderr
    assert "en-gb" in listed.stdout
