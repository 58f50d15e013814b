"""The chatterbox family end to end: the real chatterbox-tts package in its own venv, loading full-size
random-weight checkpoints (tests/checkpoints/chatterbox.py) by directory (standard) and by hub id from a
Hugging Face cache (turbo), driven through the MCP tools.

The tests of this module share one engine host (`shared_home`), so each model loads once. Every
checkpoint stops by itself after 24 speech tokens (see tests/checkpoints/chatterbox.py), so one piece of text is
about 0.8 s of audio (turbo: 1.1 s, with its 3 silence tokens), whatever the text.
"""

from __future__ import annotations

import re
import subprocess
import time

import anyio
import numpy as np
import pytest
import soundfile as sf

from mcp_tts.engines.chatterbox.engine import FIRST_CHARS, MAX_CHARS, PIECE_PAUSE
from mcp_tts.engines.runtime.sentences import split_sentences
from mcp_tts.install import CHATTERBOX_CHECK
from mcp_tts.voices import VoiceLibrary, VoiceManifest
from tests.support.families import (
    FAMILIES_DIR,
    REPO,
    assert_install_is_a_no_op_and_doctor_reports,
    chatterbox_env,
    chatterbox_snapshot,
)
from tests.support.homes import host_pids_of, server_env
from tests.support.mcp_client import MCP_TTS, Progress, audio_of, error_text, mcp_session

pytestmark = pytest.mark.anyio

STANDARD, TURBO = "ResembleAI/chatterbox", "ResembleAI/chatterbox-turbo"
PIECE_SECONDS = (0.5, 1.0)  # 24 speech tokens, less any the model samples outside the S3 vocabulary
TURBO_PIECE_SECONDS = (0.8, 1.3)
# The server's text shaping keeps Turbo's tags but reads an unknown "[yawn]" as "yawn": raw sends it as
# written, so that the engine's own note on it is what is tested
RAW = {"raw": True}


def spoken(result) -> np.ndarray:
    assert not result.is_error, result.content
    samples, rate = audio_of(result)
    assert rate == 24000 and np.sqrt(np.mean(samples ** 2)) > 1e-4
    return samples


def voice_wav(path, seconds: float, seed: int = 0):
    """A voice-like recording: a gliding voiced tone in syllable-like bursts, with a little noise."""
    rate = 24000
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(110 + 25 * np.sin(2 * np.pi * 0.4 * t + seed)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.4 + 0.6 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    noise = np.random.default_rng(seed).standard_normal(len(t))
    sf.write(path, (0.2 * voiced + 0.01 * noise).astype(np.float32), rate)
    return path


def host_log(home) -> str:
    return (home / "run" / "chatterbox.log").read_text()


async def test_standard_by_directory_preset_voice_and_settings(shared_home, chatterbox_hub):
    standard = chatterbox_snapshot(chatterbox_hub, STANDARD)
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio")
    library = VoiceLibrary(shared_home / "data" / "voices")
    for name, params in {"lively": {"exaggeration": 1.5, "cfg_weight": 0.0, "temperature": 0.5},
                         "wild": {"exaggeration": 3.0}}.items():
        library.save(VoiceManifest(name=name, kind="params", backend="chatterbox", usable_with=["chatterbox"],
                                   params=params), {})
    async with mcp_session(env) as session:
        loading = Progress()
        switched = await session.call_tool("switch_backend", {"backend": "chatterbox", "model": str(standard)},
                                           progress_callback=loading)
        listed = (await session.call_tool("list_voices", {"backend": "chatterbox"})).structured_content
        plain = await session.call_tool("say", {"text": "The build is green [laugh]."})
        lively = await session.call_tool("say", {"text": "The build is green.", "voice": "lively"})
        wild = await session.call_tool("say", {"text": "Hi.", "voice": "wild"})
        unknown = await session.call_tool("say", {"text": "Hi.", "voice": "Bob", "backend": "chatterbox"})
        german = await session.call_tool("say", {"text": "Hallo.", "language": "de"})
    assert not switched.is_error, switched.content
    assert switched.structured_content["model"] == str(standard)
    entry = listed["backends"][0]
    assert entry["installed"] and [v["name"] for v in entry["voices"]] == ["default"]
    assert entry["supports"]["params"]["cfg_weight"]["min"] == 0.0 and entry["supports"]["clone"] is True
    samples = spoken(plain)
    assert PIECE_SECONDS[0] <= len(samples) / 24000 <= PIECE_SECONDS[1]  # the stop token ended it
    out = plain.structured_content
    assert out["backend"] == "chatterbox" and out["model"] == str(standard) and out["voice"] == "default"
    assert any("[laugh] removed" in n and "chatterbox-turbo" in n for n in out["notes"])
    # cfg_weight=0 (upstream crashes on it), exaggeration and temperature reach the model
    assert len(spoken(lively)) > 0 and lively.structured_content["notes"] == []
    log = host_log(shared_home)
    assert "exaggeration 1.5, cfg_weight 0.0, temperature 0.5" in log
    assert "exaggeration 3.0 is outside 0.0-2.0" in error_text(wild)
    assert "unknown chatterbox voice 'Bob'" in error_text(unknown) and "'default'" in error_text(unknown)
    assert "English only" in error_text(german)
    assert any(f"loading {standard} onto cpu" in m for m in loading.messages)
    assert "Traceback" not in log
    assert "loaded PerthNet" in log  # the package's own print went to the log, nowhere else


async def test_long_text_is_split_at_sentences_and_every_piece_is_spoken(shared_home, chatterbox_hub):
    text = ("The tests passed on the first try. I updated the lockfile and the parser. Then I ran the linters "
            "again, and everything is clean now. The release notes are written, and the changelog lists far "
            "fewer warnings than before. Shall I merge it now, or wait for the review?")
    expected = split_sentences(text, MAX_CHARS, first_max_chars=FIRST_CHARS)
    assert len(expected) == 2 and len(text) > FIRST_CHARS
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio")
    parts = Progress()
    async with mcp_session(env) as session:
        result = await session.call_tool("say", {"text": text}, progress_callback=parts)
    samples = spoken(result)
    seconds = len(samples) / 24000
    # the log names the pieces the engine made of the text it got (the server may reword it for speech)
    split = re.findall(r"(\d+) characters in (\d+) piece\(s\) of ([\d, ]+) characters", host_log(shared_home))[-1]
    sizes = [int(n) for n in split[2].split(", ")]
    n = len(sizes)
    assert int(split[1]) == n >= 2 and all(size <= MAX_CHARS for size in sizes) and sizes[0] <= FIRST_CHARS
    assert f"piece {n}/{n}" in host_log(shared_home)
    assert f"synthesized part {n} of {n}" in parts.messages
    gaps = (n - 1) * PIECE_PAUSE["chatterbox"]  # every piece was spoken, with a sentence gap between
    assert n * PIECE_SECONDS[0] + gaps <= seconds <= n * PIECE_SECONDS[1] + gaps


async def test_saved_voices_are_cloned_with_cached_conditionals(shared_home, chatterbox_hub, tmp_path):
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_ALLOWED_DIRS=str(tmp_path))
    recording = voice_wav(tmp_path / "me.wav", 6.5, seed=1)
    async with mcp_session(env) as session:
        added = await session.call_tool("add_voice", {"name": "me", "audio_path": str(recording),
                                                      "transcript": "This is my own voice, recorded for cloning."})
        assert not added.is_error, added.content
        first_progress, second_progress = Progress(), Progress()
        first = await session.call_tool("say", {"text": "Speaking as you.", "voice": "me", "backend": "chatterbox"},
                                        progress_callback=first_progress)
        second = await session.call_tool("say", {"text": "Still speaking as you.", "voice": "me",
                                                 "backend": "chatterbox"}, progress_callback=second_progress)
    assert first.structured_content["voice"] == "me" and first.structured_content["backend"] == "chatterbox"
    assert not np.allclose(spoken(first)[:1000], 0)
    assert len(spoken(second)) > 0
    assert any("preparing the voice me" in m for m in first_progress.messages)
    assert not any("preparing the voice" in m for m in second_progress.messages)  # cached in memory
    assert len(list((shared_home / "data" / "cache" / "clone-prompts").glob("chatterbox-*.pt"))) == 1  # and on disk


async def test_turbo_by_hub_id_speaks_tags_and_clones_long_enough_references(shared_home, chatterbox_hub, tmp_path):
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio")
    made = subprocess.run([MCP_TTS, "voices", "add", "brief", "--audio", str(voice_wav(tmp_path / "b.wav", 3.0)),
                           "--text", "Too short for turbo."], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    recording = voice_wav(tmp_path / "long.wav", 6.0, seed=2)
    made = subprocess.run([MCP_TTS, "voices", "add", "narrator", "--audio", str(recording), "--text",
                           "A long enough recording."], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    async with mcp_session(env) as session:
        switched = await session.call_tool("switch_backend", {"backend": "chatterbox-turbo"})
        listed = (await session.call_tool("list_voices", {"backend": "chatterbox-turbo"})).structured_content
        tagged = await session.call_tool("say", {"text": "Well [laugh] that worked. [sigh] On we go [yawn].", **RAW})
        cloned = await session.call_tool("say", {"text": "In your voice [chuckle].", "voice": "narrator"})
        too_short = await session.call_tool("say", {"text": "Hi.", "voice": "brief"})
    assert not switched.is_error, switched.content
    assert switched.structured_content["model"] == TURBO  # through the package's from_pretrained, offline
    entry = listed["backends"][0]
    assert {"[laugh]", "[sigh]", "[chuckle]", "[clear throat]"} <= set(entry["supports"]["tags"])
    assert "[laugh]" in entry["description"] and entry["supports"]["min_reference_seconds"] == 5.0
    samples = spoken(tagged)
    assert TURBO_PIECE_SECONDS[0] <= len(samples) / 24000 <= TURBO_PIECE_SECONDS[1]
    notes = tagged.structured_content["notes"]
    assert len(notes) == 1 and "[yawn] is not among chatterbox-turbo's tags" in notes[0]  # [laugh], [sigh] kept
    assert tagged.structured_content["model"] == TURBO and tagged.structured_content["voice"] == "default"
    assert cloned.structured_content["voice"] == "narrator" and len(spoken(cloned)) > 0
    assert cloned.structured_content["notes"] == []  # [chuckle] came through the server's shaping, and is known
    message = error_text(too_short)
    assert "3.0 s long" in message and "more than 5 s" in message and "chatterbox-turbo" in message
    assert "Traceback" not in host_log(shared_home)


async def test_cancel_ends_generation_between_tokens_and_pieces(shared_home, chatterbox_hub):
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio")
    text = " ".join(["Sentence after sentence, the story goes on and on."] * 50)  # 2,550 characters
    async with mcp_session(env) as session:
        loaded = await session.call_tool("switch_backend", {"backend": "chatterbox-turbo"})
        assert not loaded.is_error, loaded.content
        with anyio.move_on_after(3):  # all its pieces would take a minute or more on this machine
            await session.call_tool("say", {"text": text})
        started = time.perf_counter()
        with anyio.fail_after(60):
            after = await session.call_tool("list_voices", {"backend": "chatterbox-turbo"})
        assert not after.is_error
        assert time.perf_counter() - started < 10  # the host's one worker was freed, not busy for a minute
    log = host_log(shared_home)
    total = int(re.findall(r"characters in (\d+) piece\(s\)", log)[-1])
    assert total >= 8 and f"piece {total}/{total}" not in log
    assert "Traceback" not in log


async def test_a_new_host_finds_a_voices_conditionals_on_disk(shared_home, chatterbox_hub, tmp_path):
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio")
    made = subprocess.run([MCP_TTS, "voices", "add", "reader", "--audio", str(voice_wav(tmp_path / "r.wav", 7.0, 3)),
                           "--text", "A recording to read with."], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    first_progress, later_progress = Progress(), Progress()
    async with mcp_session(env) as session:
        first = await session.call_tool("say", {"text": "First words.", "voice": "reader",
                                                "backend": "chatterbox-turbo"}, progress_callback=first_progress)
    assert not first.is_error, first.content
    subprocess.run([MCP_TTS, "hosts", "stop"], env=env, check=True, capture_output=True)
    while host_pids_of(shared_home / "run", "chatterbox"):
        await anyio.sleep(0.1)
    async with mcp_session(env) as session:
        later = await session.call_tool("say", {"text": "Later words.", "voice": "reader",
                                                "backend": "chatterbox-turbo"}, progress_callback=later_progress)
    assert len(spoken(later)) > 0
    assert any("preparing the voice reader" in m for m in first_progress.messages)
    assert any(f"loading {TURBO}" in m for m in later_progress.messages)  # a new host, the model loaded again
    assert not any("preparing the voice" in m for m in later_progress.messages)  # its conditionals from disk


def test_a_missing_watermarker_is_reported_never_skipped(chatterbox_family):
    """perth without pkg_resources (setuptools>=81) leaves its watermarker None: the install check and
    the engine's load both refuse, naming the fix."""
    blocked = "import sys; sys.modules['pkg_resources'] = None\n"
    check = subprocess.run([str(chatterbox_family), "-c", blocked + CHATTERBOX_CHECK], capture_output=True, text=True)
    assert check.returncode != 0 and "setuptools<81" in check.stderr
    engine = subprocess.run([str(chatterbox_family), "-c", blocked + (
        "from engines import launch; launch.install()\n"
        "from mcp_tts.engines.chatterbox.engine import _check_watermarker\n"
        "from mcp_tts.engines.runtime.synthesis import RequestError\n"
        "try:\n    _check_watermarker()\nexcept RequestError as exc:\n    print(exc.code, exc)\n")],
        cwd=REPO, capture_output=True, text=True)
    assert engine.stdout.startswith("engine_error"), engine.stdout + engine.stderr
    assert "setuptools<81" in engine.stdout and "watermark" in engine.stdout
    intact = subprocess.run([str(chatterbox_family), "-c", CHATTERBOX_CHECK], capture_output=True, text=True)
    assert intact.returncode == 0 and "perth watermark applied" in intact.stdout, intact.stderr


def test_install_is_a_no_op_when_installed_and_doctor_reports_it(chatterbox_family, home):
    assert_install_is_a_no_op_and_doctor_reports("chatterbox", home)


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online-unreachable"])
async def test_missing_weights_name_the_download_command_and_the_offline_setting_only_when_set(
        home, chatterbox_family, tmp_path, offline):
    import socket

    with socket.socket() as sock:  # a loopback port nothing listens on: nothing can be fetched
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub = tmp_path / "empty-hf"
    hub.mkdir()
    env = server_env(home, None, MCP_TTS_FAMILIES_DIR=str(FAMILIES_DIR), HF_HOME=str(hub), HF_HUB_OFFLINE="1",
                     MCP_TTS_OUTPUT="audio", MCP_TTS_BACKEND="chatterbox-turbo", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    if not offline:
        del env["HF_HUB_OFFLINE"]
    async with mcp_session(env) as session:
        message = error_text(await session.call_tool("say", {"text": "Hello."}))
    assert "ResembleAI/chatterbox-turbo is not in the Hugging Face cache" in message and str(hub) in message
    assert "`mcp-tts download chatterbox-turbo`" in message and "-m DIR" in message
    assert ("HF_HUB_OFFLINE=1" in message) is offline and ("HF_HUB_OFFLINE" in message) is offline
    assert not any((hub / "hub").glob("models--*/snapshots/*/*"))
