"""Qwen3-TTS over the network, end to end: `mcp-tts http` in front of the real qwen host (tiny random
checkpoints under the published ids), spoken to by the `openai` client, by a vLLM-Omni-style cloning
request, and used as the remote of an MCP server (`remote:qwen-custom`, `remote:qwen-base`)."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest
import soundfile as sf

from tests.support.families import qwen_env
from tests.support.homes import server_env
from tests.support.http_server import http_process
from tests.support.mcp_client import audio_of, error_text, mcp_session
from tests.support.scripted import sine

pytestmark = pytest.mark.anyio

KEY = "qwen-remote-key"
SAMPLES = 12 * 1920  # MCP_TTS_QWEN_MAX_NEW_TOKENS=13: 12 frames of 1920 samples at 24 kHz


@pytest.fixture(scope="module")
def qwen_server(shared_home, qwen_hub):
    env = qwen_env(shared_home, None, qwen_hub, MCP_TTS_API_KEY=KEY)
    with http_process(env, log=shared_home / "http.log") as (url, _):
        yield url


def reference_wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, sine(16000 * 4, 16000), 16000, format="WAV")
    return buffer.getvalue()


def test_openai_client_speaks_a_qwen_preset_and_clones_from_ref_audio(qwen_server, shared_home):
    client = openai.OpenAI(base_url=f"{qwen_server}/v1", api_key=KEY, max_retries=0, timeout=300)
    preset = client.audio.speech.create(model="qwen-custom", voice="Vivian", input="The build is green.",
                                        response_format="wav", extra_body={"language": "en",
                                                                           "instructions": "cheerful"})
    audio, rate = sf.read(io.BytesIO(preset.content), dtype="float32")
    assert rate == 24000 and len(audio) == SAMPLES
    assert preset.response.headers["x-voice"].lower() == "vivian"
    cloned = client.audio.speech.create(
        model="Qwen/Qwen3-TTS-12Hz-1.7B-Base", voice="alloy", input="Speaking in the sent voice.",
        response_format="pcm",
        extra_body={"ref_audio": "data:audio/wav;base64," + base64.b64encode(reference_wav()).decode(),
                    "ref_text": "A steady tone of four seconds."})
    assert cloned.response.headers["x-backend"] == "qwen-base"
    assert len(np.frombuffer(cloned.content, dtype="<i2")) == SAMPLES
    for ref, words in ((base64.b64encode(b"not audio at all").decode(), "is not audio that can be read"),
                       ("%%%", "ref_audio is not base64"), ("https://example.com/me.wav", "fetches no URLs")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.speech.create(model="qwen-base", voice="alloy", input="Hi.", extra_body={"ref_audio": ref})
        assert words in str(refused.value)
    short = io.BytesIO()
    sf.write(short, sine(8000, 16000), 16000, format="WAV")
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.speech.create(model="qwen-base", voice="alloy", input="Hi.",
                                   extra_body={"ref_audio": base64.b64encode(short.getvalue()).decode()})
    assert "ref_audio: the recording is 0.5 s long" in str(refused.value)
    with pytest.raises(openai.NotFoundError) as missing:
        client.audio.speech.create(model="qwen-custom", voice="Bob", input="Hi.")
    assert "Bob" in str(missing.value)
    assert not list((shared_home / "data" / "cache" / "http-references").iterdir())  # sent recordings not kept


async def test_an_mcp_server_speaks_through_a_qwen_remote(qwen_server, home, tmp_path):
    recording = tmp_path / "me.wav"
    recording.write_bytes(reference_wav())
    env = server_env(home, None, MCP_TTS_REMOTE_URL=qwen_server, MCP_TTS_REMOTE_API_KEY=KEY,
                     MCP_TTS_ALLOWED_DIRS=str(tmp_path))
    async with mcp_session(env) as session:
        listing = (await session.call_tool("list_voices", {"backend": "remote:qwen-custom"})).structured_content
        assert {"Vivian", "Ryan"} <= {v["name"] for v in listing["backends"][0]["voices"]}
        said = await session.call_tool("say", {"text": "From the GPU box.", "backend": "remote:qwen-custom",
                                               "voice": "Ryan", "output": "audio"})
        assert not said.is_error, said.content
        audio, rate = audio_of(said)
        assert rate == 24000 and len(audio) == SAMPLES and said.structured_content["remote"] == qwen_server
        added = await session.call_tool("add_voice", {"name": "me", "audio_path": str(recording),
                                                      "transcript": "A steady tone of four seconds."})
        assert not added.is_error, added.content
        cloned = await session.call_tool("say", {"text": "In my own voice.", "backend": "remote:qwen-base",
                                                 "voice": "me", "output": "audio"})
        assert not cloned.is_error, cloned.content
        assert len(audio_of(cloned)[0]) == SAMPLES
        refused = await session.call_tool("say", {"text": "Hi.", "backend": "remote:qwen-custom", "voice": "Bob",
                                                  "output": "audio"})
        assert "refused (404)" in error_text(refused) and "Bob" in error_text(refused)
