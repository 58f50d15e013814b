"""`mcp-tts http`: the OpenAI speech API, against the official `openai` client and httpx.

Most tests run `mcp-tts http` as a process on loopback with the real builtin engine host; the ones about
a stream's end (a client that leaves, an engine that fails mid-stream) run the app on uvicorn beside a
scripted engine host, which records the Cancel it is sent.
"""

from __future__ import annotations

import base64
import io
import json
import os
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx2 as httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from mcp_tts.engines.contract.protocol import Cancel, Synthesize
from mcp_tts.http.app import create_app
from tests.support.homes import server_env
from tests.support.http_server import free_port, http_process, uvicorn_app
from tests.support.mcp_client import MCP_TTS
from tests.support.scripted import Script

KEY = "test-key-0123456789"
SENTENCE = "The build finished and every test passed."


@pytest.fixture(scope="module")
def server(shared_home):
    env = server_env(shared_home, None, MCP_TTS_API_KEY=KEY)
    with http_process(env, log=shared_home / "http.log") as (url, _):
        yield url


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0


def same_speech(a: bytes, b: bytes) -> bool:
    """The same utterance as 16-bit PCM: espeak's output differs from run to run by a few samples of length
    and a rounding step, so the same length within 1% and the same loudness within 2%."""
    x, y = (np.frombuffer(d, dtype="<i2").astype(np.float32) for d in (a, b))
    return len(x) > 0 and abs(len(x) - len(y)) <= len(y) / 100 and abs(rms(x) - rms(y)) <= 0.02 * rms(y)


def test_openai_client_gets_a_wav(server):
    response = client(server).audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="wav")
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 22050
    assert len(audio) / rate > 1.0 and rms(audio) > 0.01
    assert response.response.headers["x-voice"] == "en-us"  # OpenAI's voice name: the backend's default


def test_openai_streaming_response_streams_pcm_as_it_is_made(server):
    text = " ".join([SENTENCE] * 12)
    with client(server).audio.speech.with_streaming_response.create(
            model="builtin", voice="en-gb", input=text, response_format="pcm") as response:
        assert response.headers["x-sample-rate"] == "22050"
        assert response.headers["x-voice"] == "en-gb"
        parts = list(response.iter_bytes())
    data = b"".join(parts)
    assert len(parts) > 1 and len(data) % 2 == 0
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767
    assert len(samples) / 22050 > 10 and rms(samples) > 0.01


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus"])
def test_other_formats_decode_to_the_same_speech(server, fmt):
    wav = client(server).audio.speech.create(model="builtin", voice="en-us", input=SENTENCE, response_format="wav")
    other = client(server).audio.speech.create(model="builtin", voice="en-us", input=SENTENCE, response_format=fmt)
    reference, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    audio, other_rate = sf.read(io.BytesIO(other.content), dtype="float32")
    assert other_rate == (24000 if fmt == "opus" else rate)  # Opus has no 22,050 Hz: resampled
    assert other.response.headers["x-sample-rate"] == str(other_rate)
    assert abs(len(audio) / other_rate - len(reference) / rate) < 0.1
    assert rms(audio) > 0.5 * rms(reference)


def test_server_sent_events_carry_the_same_audio(server):
    body = {"model": "builtin", "voice": "en-us", "input": SENTENCE, "response_format": "pcm"}
    plain = httpx.post(f"{server}/v1/audio/speech", json=body, headers=auth(), timeout=60)
    events = []
    with httpx.stream("POST", f"{server}/v1/audio/speech", json={**body, "stream_format": "sse"}, headers=auth(),
                      timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 1
    assert same_speech(b"".join(base64.b64decode(e["audio"]) for e in deltas), plain.content)


def test_vllm_omni_stream_true_means_events(server):
    body = {"input": "Hello.", "response_format": "pcm", "stream": True}
    with httpx.stream("POST", f"{server}/v1/audio/speech", json=body, headers=auth(), timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert json.loads(lines[-1][5:])["type"] == "speech.audio.done"


def test_key_missing_wrong_and_right(server):
    missing = httpx.post(f"{server}/v1/audio/speech", json={"input": "hi"}, timeout=30)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong-key").audio.speech.create(model="tts-1", voice="alloy", input="hi")
    with pytest.raises(openai.AuthenticationError):
        client(server, key=KEY + "x").models.list()
    assert httpx.get(f"{server}/v1/audio/voices", headers={"Authorization": KEY}, timeout=30).status_code == 401
    assert httpx.get(f"{server}/health", timeout=30).json()["status"] == "ok"  # for load balancers: no key
    assert [m.id for m in client(server).models.list()][:1] == ["builtin"]


def test_voices_and_models(server):
    voices = httpx.get(f"{server}/v1/audio/voices", headers=auth(), timeout=60).json()
    assert "en-us" in voices["backends"]["builtin"]["voices"]
    assert voices["backends"]["builtin"]["sample_rate"] == 22050
    assert "en-us" in voices["voices"]
    missing = httpx.get(f"{server}/v1/audio/voices", params={"backend": "nope"}, headers=auth(), timeout=30)
    assert missing.status_code == 404 and "backends: builtin" in missing.json()["error"]["message"]
    ids = [m["id"] for m in httpx.get(f"{server}/v1/models", headers=auth(), timeout=30).json()["data"]]
    assert {"builtin", "espeak-ng", "tts-1", "tts-1-hd"} <= set(ids)
    assert "qwen-custom" not in ids  # not installed here


HOSTILE = [
    (b"not json", 400, None, "not JSON"),
    (b"[1, 2]", 400, None, "not an object"),
    (b"[" * 100_000, 400, None, "not JSON"),
    (b'{"input": "\xff\xfe"}', 400, None, "not JSON"),
    (b'{"input": 5}', 400, "input", "input must be a string"),
    (b'{"voice": "alloy"}', 400, "input", "input is required"),
    (b'{"input": "hi", "speed": 9}', 400, "speed", "speed must be at most 2"),
    (b'{"input": "hi", "speed": "fast"}', 400, "speed", "speed must be a number"),
    (b'{"input": "hi", "response_format": "aac"}', 400, "response_format", "'opus'"),
    (b'{"input": "hi", "bogus": 1}', 400, "bogus", "not an argument"),
    (b'{"input": "   "}', 400, "input", "input is empty"),
    (b'{"input": "a\\u0000b"}', 400, "input", "input holds the control character U+0000"),
    (json.dumps({"input": "x" * 5001}).encode(), 400, "input", "at most 5000"),
    (b'{"input": "hi", "model": "whisper-1"}', 404, "model", "models: builtin"),
    (b'{"input": "hi", "voice": "zz-nonexistent"}', 404, "voice", "unknown espeak voice"),
    (b'{"input": "hi", "voice": "../../etc/passwd"}', 400, "voice", "not a voice name"),
    (b'{"input": "hi", "model": "qwen-custom"}', 503, "model", "mcp-tts install qwen"),
    (b'{"input": "hi", "ref_audio": "AAAA"}', 422, "ref_audio", "cloning backends"),
    (b'{"input": "hi", "exaggeration": 7}', 400, "exaggeration", "at most 2"),
]


@pytest.mark.parametrize(("body", "status", "param", "words"), HOSTILE, ids=[h[3] for h in HOSTILE])
def test_hostile_bodies_get_openai_errors(server, body, status, param, words):
    response = httpx.post(f"{server}/v1/audio/speech", content=body, headers=auth(), timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"]
    assert error["param"] == param and error["type"] and error["code"]


def test_a_body_over_the_limit_is_refused_and_the_server_goes_on(server):
    huge = json.dumps({"input": "hi", "ref_audio": "A" * (17 * 2**20)}).encode()
    response = httpx.post(f"{server}/v1/audio/speech", content=huge, headers=auth(), timeout=60)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert httpx.post(f"{server}/v1/audio/speech", json={"input": "still here", "response_format": "wav"},
                      headers=auth(), timeout=60).status_code == 200


def test_sixteen_concurrent_clients_all_get_their_whole_speech(server):
    texts = [f"Client number {i} has finished its work." for i in range(16)]

    def speak(text: str) -> bytes:
        return client(server).audio.speech.create(model="builtin", voice="en-us", input=text,
                                                  response_format="pcm").content

    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(speak, texts))
    assert all(same_speech(pcm, speak(text)) for pcm, text in zip(together[::5], texts[::5], strict=True))
    assert all(len(pcm) > 22050 for pcm in together)  # each over half a second of speech


def test_refuses_another_address_without_a_key(shared_home, tmp_path):
    env = server_env(shared_home, None)
    run = subprocess.run([MCP_TTS, "http", "--host", "0.0.0.0", "--port", str(free_port())], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "refusing to listen on '0.0.0.0' without an API key" in run.stderr
    remote_default = subprocess.run([MCP_TTS, "http", "--port", str(free_port())], timeout=60, capture_output=True,
                                    text=True, env={**env, "MCP_TTS_BACKEND": "remote:builtin"})
    assert remote_default.returncode == 2 and "unknown backend 'remote:builtin'" in remote_default.stderr
    empty = tmp_path / "key"
    empty.write_text("\n")
    run = subprocess.run([MCP_TTS, "http", "--host", "0.0.0.0", "--port", str(free_port()), "--api-key-file",
                          str(empty)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "is empty" in run.stderr


def test_tls_through_uvicorns_options(shared_home, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True, timeout=60)
    env = server_env(shared_home, None, MCP_TTS_API_KEY=KEY)
    port = free_port()
    proc = subprocess.Popen([MCP_TTS, "http", "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile",
                             str(key)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"https://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{url}/health", verify=trusting(cert), timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with pytest.raises(httpx.ConnectError):  # a certificate the client does not trust is refused
            httpx.get(f"{url}/health", timeout=5)
        spoken = client_over(url, cert).audio.speech.create(model="tts-1", voice="alloy", input="Encrypted.",
                                                           response_format="wav")
        assert sf.info(io.BytesIO(spoken.content)).duration > 0.3
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def client_over(url: str, cert) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60,
                         http_client=openai.DefaultHttpxClient(verify=trusting(cert)))


def trusting(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def test_key_file_is_read(shared_home, tmp_path):
    (tmp_path / "key").write_text("from-a-file\n")
    env = server_env(shared_home, None)
    with http_process(env, "--api-key-file", str(tmp_path / "key")) as (url, _):
        assert httpx.get(f"{url}/v1/models", headers=auth("from-a-file"), timeout=30).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers=auth(KEY), timeout=30).status_code == 401


# --- the end of a stream, against a scripted engine host ------------------------------------------------------

@pytest.mark.anyio
async def test_a_client_that_leaves_mid_stream_cancels_the_engine_work(scripted):
    rig = scripted
    rig.engine.scripts.append(Script(chunks=400, pause=0.02))
    async with uvicorn_app(create_app(rig.settings, None)) as url, httpx.AsyncClient() as http:
        async with http.stream("POST", f"{url}/v1/audio/speech", json={"input": "a long one", "response_format": "pcm"},
                               timeout=30) as response:
            assert response.status_code == 200
            async for _ in response.aiter_bytes():
                break  # the first audio, then away
        with anyio.fail_after(10):
            while not rig.engine.of(Cancel):
                await anyio.sleep(0.02)
        utt = rig.engine.of(Synthesize)[0].id
        assert [c.id for c in rig.engine.of(Cancel)] == [utt]
        with anyio.fail_after(10):
            while rig.engine.active():
                await anyio.sleep(0.02)
        rig.engine.scripts.append(Script(chunks=3))  # the engine is free for the next one
        after = await http.post(f"{url}/v1/audio/speech", json={"input": "next", "response_format": "pcm"}, timeout=30)
        assert after.status_code == 200 and len(after.content) == 3 * 800 * 2


@pytest.mark.anyio
async def test_an_event_stream_client_that_leaves_cancels_the_engine_work_too(scripted):
    rig = scripted
    rig.engine.scripts.append(Script(chunks=400, pause=0.02))
    async with uvicorn_app(create_app(rig.settings, None)) as url, httpx.AsyncClient() as http:
        body = {"input": "a long one", "response_format": "pcm", "stream_format": "sse"}
        async with http.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=30) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break
        with anyio.fail_after(10):
            while not rig.engine.of(Cancel):
                await anyio.sleep(0.02)
    assert rig.engine.of(Cancel)[0].id == rig.engine.of(Synthesize)[0].id


@pytest.mark.anyio
async def test_engine_failure_mid_stream_cuts_the_chunked_body_short(scripted):
    rig = scripted
    rig.engine.scripts.append(Script(chunks=10, pause=0.01, fail="engine_error", fail_after=3))
    async with uvicorn_app(create_app(rig.settings, None)) as url, httpx.AsyncClient() as http:
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream("POST", f"{url}/v1/audio/speech", json={"input": "x", "response_format": "pcm"},
                                   timeout=30) as response:
                assert response.status_code == 200
                async for part in response.aiter_bytes():
                    received += part
        assert 0 < len(received) <= 3 * 800 * 2


@pytest.mark.anyio
async def test_engine_failure_mid_stream_is_an_sse_error_event(scripted):
    rig = scripted
    rig.engine.scripts.append(Script(chunks=10, pause=0.01, fail="engine_error", fail_after=3,
                                     fail_message="the GPU fell over"))
    async with uvicorn_app(create_app(rig.settings, None)) as url, httpx.AsyncClient() as http:
        body = {"input": "x", "response_format": "pcm", "stream_format": "sse"}
        async with http.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=30) as response:
            events = [json.loads(line[5:]) async for line in response.aiter_lines() if line.startswith("data:")]
    assert events[-1]["type"] == "error" and "the GPU fell over" in events[-1]["error"]["message"]
    assert "speech.audio.done" not in [e["type"] for e in events]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * len(events[:-1]) and len(events) > 1


@pytest.mark.anyio
async def test_refusal_before_audio_is_an_http_error(scripted):
    rig = scripted
    rig.engine.scripts.append(Script(fail="busy", fail_message="the engine is busy"))
    async with uvicorn_app(create_app(rig.settings, None)) as url, httpx.AsyncClient() as http:
        response = await http.post(f"{url}/v1/audio/speech", json={"input": "x"}, timeout=30)
    assert response.status_code == 503 and response.json()["error"]["code"] == "busy"
    assert not os.listdir(rig.settings.data_dir / "cache") if (rig.settings.data_dir / "cache").exists() else True

