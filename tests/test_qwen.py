"""The qwen family end to end: the real qwen-tts package in its own venv, loading tiny random checkpoints
by their hub ids from a Hugging Face cache, driven through the MCP tools."""

from __future__ import annotations

import stat
import subprocess
import time

import anyio
import numpy as np
import pytest
import soundfile as sf

from tests.support.families import REPO, assert_install_is_a_no_op_and_doctor_reports, qwen_env
from tests.support.homes import host_pids_of, server_env
from tests.support.mcp_client import MCP_TTS, Progress, audio_of, error_text, mcp_session

pytestmark = pytest.mark.anyio

FRAMES = 12  # MCP_TTS_QWEN_MAX_NEW_TOKENS=13: random weights never stop, N tokens give N-1 frames
SAMPLES = FRAMES * 1920


@pytest.fixture(scope="session")
def unusual_checkpoints(qwen_family, tmp_path_factory) -> dict[str, str]:
    """Local checkpoint directories unlike the published ones (tests/checkpoints/qwen.py): a fine-tuned
    custom_voice with its own speakers and an added language; one of 8 codebooks a frame; one whose
    talker has biased attention projections, which the fast decode loop does not cover."""
    root = tmp_path_factory.mktemp("unusual")
    builds = {"crew": ["--speakers", "captain,ada", "--extra-languages", "klingon"],
              "eight_codebooks": ["--code-groups", "8"], "biased": ["--attention-bias"]}
    for name, args in builds.items():
        subprocess.run([str(qwen_family), "-m", "tests.checkpoints.qwen", "custom_voice", str(root / name), *args],
                       cwd=REPO, check=True, capture_output=True, timeout=300)
    return {name: str(root / name) for name in builds}


async def test_custom_voice_presets_instruct_and_languages(home, qwen_hub):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio")
    async with mcp_session(env) as session:
        listed = (await session.call_tool("list_voices", {"backend": "qwen-custom"})).structured_content
        loading = Progress()
        styled = await session.call_tool("say", {"text": "The build is green.", "backend": "qwen-custom",
                                                 "voice": "Vivian", "instruct": "cheerful and quick",
                                                 "language": "en"}, progress_callback=loading)
        plain = await session.call_tool("say", {"text": "The build is green.", "backend": "qwen-custom",
                                                "voice": "vivian"})
        other = await session.call_tool("say", {"text": "The build is green.", "backend": "qwen-custom",
                                                "voice": "Ryan", "language": "auto"})
        small = await session.call_tool("say", {"text": "Hi.", "backend": "qwen-custom", "instruct": "sad",
                                                "model": "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"})
        bad_speaker = await session.call_tool("say", {"text": "Hi.", "backend": "qwen-custom", "voice": "Bob"})
        bad_language = await session.call_tool("say", {"text": "Hi.", "backend": "qwen-custom", "language": "xx"})
        bad_model = await session.call_tool("say", {"text": "Hi.", "backend": "qwen-custom",
                                                    "model": "Qwen/Qwen3-TTS-12Hz-1.7B-Base"})
        base_dir = next((qwen_hub / "hub" / "models--Qwen--Qwen3-TTS-12Hz-1.7B-Base" / "snapshots").iterdir())
        wrong_kind = await session.call_tool("say", {"text": "Hi.", "backend": "qwen-custom", "model": str(base_dir)})
    entry = listed["backends"][0]
    assert entry["installed"] and {v["name"] for v in entry["voices"]} >= {"Vivian", "Serena", "Uncle_Fu", "Sohee"}
    out = styled.structured_content
    assert out["backend"] == "qwen-custom" and out["model"] == "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"
    assert out["voice"] == "Vivian" and out["notes"] == []
    samples, rate = audio_of(styled)
    assert rate == 24000 and len(samples) == SAMPLES and np.sqrt(np.mean(samples ** 2)) > 1e-3
    assert any("loading Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice" in m for m in loading.messages)
    # instruct reaches the model: the same text and speaker sound different with and without it
    assert not np.allclose(samples, audio_of(plain)[0])
    assert plain.structured_content["voice"] == "Vivian"
    assert not np.allclose(audio_of(plain)[0], audio_of(other)[0])
    assert small.structured_content["model"] == "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    assert any("instruct ignored" in n and "0.6B" in n for n in small.structured_content["notes"])
    assert "unknown qwen-custom speaker 'Bob'" in error_text(bad_speaker) and "Sohee" in error_text(bad_speaker)
    assert "language 'xx'" in error_text(bad_language) and "ja" in error_text(bad_language)
    assert "unknown model" in error_text(bad_model) and "0.6B-CustomVoice" in error_text(bad_model)
    assert "is a base checkpoint" in error_text(wrong_kind) and "custom_voice" in error_text(wrong_kind)


async def test_design_then_clone_with_a_cached_prompt(home, qwen_hub):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio")
    async with mcp_session(env) as session:
        designed = await session.call_tool("design_voice", {
            "description": "a warm, low female voice, calm and slow", "name": "narrator",
            "backend": "qwen-design", "sample_text": "Once upon a time, in a quiet town."})
        direct = await session.call_tool("say", {"text": "Hello.", "backend": "qwen-design",
                                                 "instruct": "a bright young man"})
        no_instruct = await session.call_tool("say", {"text": "Hello.", "backend": "qwen-design"})
        first_progress, second_progress = Progress(), Progress()
        first = await session.call_tool("say", {"text": "Chapter one.", "voice": "narrator"},
                                        progress_callback=first_progress)
        started = time.perf_counter()
        second = await session.call_tool("say", {"text": "Chapter one.", "voice": "narrator"},
                                         progress_callback=second_progress)
        assert time.perf_counter() - started < 30
    out = designed.structured_content
    assert out["backend"] == "qwen-design" and out["model"] == "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"
    assert out["usable_with"][0] == "qwen-base"
    manifest = (home / "data" / "voices" / "narrator" / "manifest.json").read_text()
    assert '"kind": "reference"' in manifest and "Once upon a time" in manifest
    assert sf.info(out["sample_path"]).samplerate == 24000
    assert not direct.is_error and direct.structured_content["voice"] == "designed"
    assert "instruct" in error_text(no_instruct)
    # a designed voice is spoken by qwen-base, cloning its saved reference
    assert first.structured_content["backend"] == "qwen-base"
    assert first.structured_content["voice"] == "narrator"
    assert any("preparing the voice narrator" in m for m in first_progress.messages)
    assert not any("preparing the voice" in m for m in second_progress.messages)  # the prompt was cached
    assert not second.is_error, second.content
    assert (second.structured_content["backend"], second.structured_content["voice"]) == ("qwen-base", "narrator")
    assert audio_of(second)[0].size > 0 and audio_of(second)[1] == 24000
    cached = list((home / "data" / "cache" / "clone-prompts").glob("*.pt"))
    assert len(cached) == 1
    assert stat.S_IMODE(cached[0].stat().st_mode) == 0o600  # the user's own voice: private
    assert stat.S_IMODE(cached[0].parent.stat().st_mode) == 0o700

    # a new host finds the prompt on disk: no preparing again
    subprocess.run([MCP_TTS, "hosts", "stop"], env=env, check=True, capture_output=True)
    while host_pids_of(home / "run", "qwen"):
        await anyio.sleep(0.1)
    async with mcp_session(env) as session:
        third_progress = Progress()
        third = await session.call_tool("say", {"text": "Chapter two.", "voice": "narrator"},
                                        progress_callback=third_progress)
    assert not third.is_error, third.content
    assert not any("preparing the voice" in m for m in third_progress.messages)
    assert any("loading" in m for m in third_progress.messages)


async def test_a_users_recording_becomes_a_cloned_voice(home, qwen_hub, tmp_path):
    recording = tmp_path / "me.wav"
    made = subprocess.run([MCP_TTS, "say", "This is my own voice, recorded for cloning. Hello there.",
                           "-o", str(recording)], env=server_env(home, None), capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio")
    added = subprocess.run([MCP_TTS, "voices", "add", "me", "--audio", str(recording), "--text",
                            "This is my own voice, recorded for cloning. Hello there."], env=env,
                           capture_output=True, text=True)
    assert added.returncode == 0 and "qwen-base" in added.stdout, added.stderr
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48000, dtype=np.float32), 16000)
    refused = subprocess.run([MCP_TTS, "voices", "add", "quiet", "--audio", str(silent), "--text", "x"], env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "silent" in refused.stderr
    assert not (home / "data" / "voices" / "quiet").exists()
    async with mcp_session(env) as session:
        cloned = await session.call_tool("say", {"text": "Speaking as you.", "voice": "me"})
        small = await session.call_tool("say", {"text": "Speaking as you.", "voice": "me", "backend": "qwen-base",
                                                "model": "Qwen/Qwen3-TTS-12Hz-0.6B-Base"})
        custom = await session.call_tool("say", {"text": "Hi.", "voice": "me", "backend": "qwen-custom"})
    assert cloned.structured_content["backend"] == "qwen-base" and len(audio_of(cloned)[0]) > 0
    assert small.structured_content["model"] == "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
    assert "works with qwen-base" in error_text(custom)


async def test_hot_swap_among_the_three_and_eviction(home, qwen_hub):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio")
    async with mcp_session(env) as session:
        steps = []
        for backend in ("qwen-custom", "qwen-design", "qwen-base", "qwen-custom", "builtin", "qwen-design"):
            result = await session.call_tool("switch_backend", {"backend": backend})
            assert not result.is_error, result.content
            steps.append(result.structured_content)
        spoken = await session.call_tool("say", {"text": "Default backend now.", "instruct": "a calm old man"})
    assert [s["switch"] for s in steps] == ["new_host", "hot_swap", "hot_swap", "already_loaded", "hot_swap",
                                            "already_loaded"]
    qwen_pids = {s["host_pid"] for s in steps if s["backend"].startswith("qwen")}
    assert len(qwen_pids) == 1  # never restarted
    assert steps[3]["total_seconds"] < 1.0  # a swap to a resident model is instant
    assert spoken.structured_content["backend"] == "qwen-design"

    # a budget that fits one tiny model: each switch evicts the other
    tight = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_QWEN_MEMORY_GB="0.02")
    subprocess.run([MCP_TTS, "hosts", "stop"], env=env, check=True, capture_output=True)
    while host_pids_of(home / "run", "qwen"):
        await anyio.sleep(0.1)
    async with mcp_session(tight) as session:
        swaps = [(await session.call_tool("switch_backend", {"backend": b})).structured_content["switch"]
                 for b in ("qwen-custom", "qwen-design", "qwen-custom", "qwen-custom")]
    assert swaps == ["new_host", "hot_swap", "hot_swap", "already_loaded"]
    log = (home / "run" / "qwen.log").read_text()
    assert "evicting Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice" in log


@pytest.mark.parametrize("streams", ["1", "4"], ids=["one_stream_path", "frame_batch"])
async def test_cancel_stops_generation_between_frames(home, qwen_hub, streams):
    """On the one-stream path (MCP_TTS_QWEN_STREAMS=1, the GPU's default) and through the frame batch."""
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_QWEN_MAX_NEW_TOKENS="3000",
                   MCP_TTS_QWEN_STREAMS=streams)
    async with mcp_session(env) as session:
        await session.call_tool("switch_backend", {"backend": "qwen-custom"})
        with anyio.move_on_after(2):  # 3000 frames would take a minute or more on this machine
            await session.call_tool("say", {"text": "A long story.", "backend": "qwen-custom"})
        started = time.perf_counter()
        with anyio.fail_after(30):
            after = await session.call_tool("list_voices", {"backend": "qwen-custom"})
        assert not after.is_error
        assert time.perf_counter() - started < 10  # the host's one worker was freed, not busy for a minute
    log = (home / "run" / "qwen.log").read_text()
    assert "Traceback" not in log


def test_install_is_a_no_op_when_installed_and_doctor_reports_it(qwen_family, home):
    assert_install_is_a_no_op_and_doctor_reports("qwen", home)


async def test_qwen_speech_plays_after_builtin_speech(home, pulse, qwen_hub):
    """24 kHz qwen audio after 22.05 kHz espeak audio: the speaker reopens its stream at the new rate."""
    async with mcp_session(qwen_env(home, pulse, qwen_hub)) as session:
        first = await session.call_tool("say", {"text": "Built in.", "wait": "end"})
        second = await session.call_tool("say", {"text": "Neural.", "backend": "qwen-custom", "wait": "end"})
    assert first.structured_content["status"] == "played"
    assert second.structured_content["status"] == "played", second.content
    assert second.structured_content["audio_seconds"] == pytest.approx(FRAMES * 0.08, abs=0.01)
    assert second.structured_content["started_clock"] >= first.structured_content["ended_clock"] - 0.05


async def test_upstream_generation_stays_available_behind_a_setting(home, qwen_hub):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_QWEN_FAST="0")
    async with mcp_session(env) as session:
        result = await session.call_tool("say", {"text": "Upstream path.", "backend": "qwen-custom"})
    assert not result.is_error, result.content
    samples, rate = audio_of(result)
    assert rate == 24000 and len(samples) == SAMPLES and np.sqrt(np.mean(samples ** 2)) > 1e-3


async def test_a_repeated_phrase_plays_from_the_phrase_cache(home, qwen_hub, tmp_path):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio")
    args = {"text": "Tests passed.", "backend": "qwen-custom", "voice": "Vivian"}
    async with mcp_session(env) as session:
        first = await session.call_tool("say", args)
        again = await session.call_tool("say", args)
        other_voice = await session.call_tool("say", {**args, "voice": "Ryan"})
        raw = await session.call_tool("say", {**args, "raw": True})  # the same words: the same key
    assert not first.is_error, first.content
    assert first.structured_content["cache_hit"] is False
    assert again.structured_content["cache_hit"] is True
    assert any("phrase cache" in note for note in again.structured_content["notes"])
    for field in ("model", "voice", "backend"):  # reported as the engine first reported them
        assert again.structured_content[field] == first.structured_content[field]
    assert again.structured_content["time_to_first_audio_ms"] < first.structured_content["time_to_first_audio_ms"]
    np.testing.assert_array_equal(audio_of(again)[0], audio_of(first)[0])  # sampled once, heard the same since
    assert other_voice.structured_content["cache_hit"] is False  # the voice is part of the key
    assert raw.structured_content["cache_hit"] is True
    assert len(list((home / "data" / "cache" / "phrases").glob("*.wav"))) == 2


async def test_a_fine_tuned_checkpoint_speaks_and_lists_its_own_speakers(home, qwen_hub, unusual_checkpoints):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_BACKEND="qwen-custom",
                   MCP_TTS_MODEL=unusual_checkpoints["crew"])
    async with mcp_session(env) as session:
        spoken = await session.call_tool("say", {"text": "All hands on deck.", "voice": "captain"})
        added_language = await session.call_tool("say", {"text": "Qapla.", "voice": "Ada", "language": "klingon"})
        default = await session.call_tool("say", {"text": "Aye."})
        listed = (await session.call_tool("list_voices", {"backend": "qwen-custom"})).structured_content
        published = await session.call_tool("say", {"text": "Hi.", "voice": "Vivian"})
    assert not spoken.is_error, spoken.content
    out = spoken.structured_content
    assert (out["voice"], out["model"], out["notes"]) == ("captain", unusual_checkpoints["crew"], [])
    samples, rate = audio_of(spoken)
    assert rate == 24000 and len(samples) == SAMPLES and np.sqrt(np.mean(samples ** 2)) > 1e-3
    assert added_language.structured_content["voice"] == "ada"
    assert default.structured_content["voice"] == "captain"  # no Ryan here: the checkpoint's first speaker
    entry = listed["backends"][0]
    names = {v["name"] for v in entry["voices"]}
    assert names == {"captain", "ada"} and "Vivian" not in names
    assert "klingon" in entry["supports"]["language"] and "en" in entry["supports"]["language"]
    message = error_text(published)
    assert "unknown qwen-custom speaker 'Vivian'" in message and "captain, ada" in message


async def test_checkpoints_outside_the_fast_path_speak_through_upstream_with_a_note(home, qwen_hub,
                                                                                   unusual_checkpoints):
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_BACKEND="qwen-custom")
    async with mcp_session(env) as session:
        eight = await session.call_tool("say", {"text": "Eight codebooks.", "voice": "Ryan",
                                                "model": unusual_checkpoints["eight_codebooks"]})
        biased = await session.call_tool("say", {"text": "Biased projections.", "voice": "Ryan",
                                                 "model": unusual_checkpoints["biased"]})
    # 8 codebooks a frame: the fast loop is generic in them (tests/checks/qwen_fast.py compares its codes)
    assert not eight.is_error, eight.content
    assert eight.structured_content["notes"] == []
    samples, rate = audio_of(eight)
    assert rate == 24000 and len(samples) == SAMPLES and np.sqrt(np.mean(samples ** 2)) > 1e-3
    # biased attention: decided at load from the config, decoded by qwen-tts's own generate, and said so
    assert not biased.is_error, biased.content
    assert any("qwen-tts's own generate" in n and "attention_bias" in n for n in biased.structured_content["notes"])
    samples, rate = audio_of(biased)
    assert rate == 24000 and len(samples) == SAMPLES and np.sqrt(np.mean(samples ** 2)) > 1e-3
    log = (home / "run" / "qwen.log").read_text()
    assert "Traceback" not in log


def closed_port() -> int:
    """A loopback port nothing listens on: a download from it fails at once, and nothing is fetched."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online-unreachable"])
async def test_missing_weights_name_the_download_command_and_the_offline_setting_only_when_set(
        home, qwen_family, tmp_path, offline):
    hub = tmp_path / "empty-hf"
    hub.mkdir()
    env = qwen_env(home, None, hub, MCP_TTS_OUTPUT="audio", HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    if not offline:
        del env["HF_HUB_OFFLINE"]
    async with mcp_session(env) as session:
        default = await session.call_tool("say", {"text": "Hello.", "backend": "qwen-custom"})
        small = await session.call_tool("say", {"text": "Hello.", "backend": "qwen-custom",
                                                "model": "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"})
    message = error_text(default)
    assert "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice is not in the Hugging Face cache" in message
    assert str(hub) in message and "`mcp-tts download qwen-custom`" in message and "-m DIR" in message
    assert "MCP_TTS_MODEL" in message
    assert ("HF_HUB_OFFLINE=1" in message) is offline and ("HF_HUB_OFFLINE" in message) is offline
    assert ("could not be downloaded from http://127.0.0.1:" in message) is not offline
    assert "`mcp-tts download qwen-custom --model Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice`" in error_text(small)
    assert not any((hub / "hub").glob("models--*/snapshots/*/*"))  # nothing was fetched


async def test_a_host_started_without_the_weights_is_restarted_by_a_server_that_has_them(home, qwen_hub, tmp_path):
    empty = tmp_path / "empty-hf"
    empty.mkdir()
    async with mcp_session(qwen_env(home, None, empty, MCP_TTS_OUTPUT="audio")) as before:
        failed = await before.call_tool("say", {"text": "Hello.", "backend": "qwen-custom"})
    assert "is not in the Hugging Face cache" in error_text(failed)
    (first,) = host_pids_of(home / "run", "qwen")
    async with mcp_session(qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio")) as after:  # HF_HOME set right
        spoken = await after.call_tool("say", {"text": "Hello.", "backend": "qwen-custom"})
        (second,) = host_pids_of(home / "run", "qwen")
    assert not spoken.is_error, spoken.content
    assert second != first and spoken.structured_content["audio_seconds"] > 0
