"""The `mcp-tts` command as a person types it."""

from __future__ import annotations

import json
import subprocess

import pytest
import soundfile as sf

from tests.support.homes import host_pids_of, server_env
from tests.support.mcp_client import MCP_TTS


def run(env, *args, timeout=60):
    return subprocess.run([MCP_TTS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_say_to_file(home, tmp_path):
    env = server_env(home, None)
    out = tmp_path / "hello.wav"
    result = run(env, "say", "Hello from the command line.", "-v", "en-gb+m3", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "saved" and report["voice"] == "en-gb+m3"
    info = sf.info(out)
    assert info.samplerate == 22050 and info.duration == pytest.approx(report["audio_seconds"], abs=0.01)


def test_say_plays_on_the_sound_server(home, pulse):
    result = run(server_env(home, pulse), "say", "Played from the terminal.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("played:") and "PulseAudio" in result.stdout


@pytest.mark.parametrize("target, message", [
    ("/nonexistent-dir/out.wav", "does not exist"),
    ("/proc/out.wav", "not writable"),
    ("/tmp", "is a directory"),
    ("out.mp3", "must end in"),
])
def test_say_unwritable_output_is_a_clear_error(home, target, message):
    result = run(server_env(home, None), "say", "Hi.", "-o", target)
    assert result.returncode == 2
    assert "cannot write audio" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_say_bad_input_exit_codes(home):
    env = server_env(home, None)
    for args, message in [(["say", " "], "empty"), (["say", "hi", "-v", "nope-voice"], "unknown espeak voice"),
                          (["say", "hi", "-b", "qwen-custom"], "mcp-tts install qwen"),
                          (["say", "hi", "-s", "5"], "speed: Input should be less than or equal to 2 (given 5.0)")]:
        result = run(env, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_voices(home):
    env = server_env(home, None)
    text = run(env, "voices")
    assert text.returncode == 0, text.stderr
    assert "builtin (installed)" in text.stdout and "mcp-tts install qwen" in text.stdout
    data = json.loads(run(env, "voices", "-b", "builtin", "--json").stdout)
    assert len(data["backends"][0]["voices"]) > 100


def test_hosts_status_and_stop(home):
    env = server_env(home, None)
    assert "no engine hosts running" in run(env, "hosts").stdout
    run(env, "say", "Start a host.", "-o", str(home / "x.wav"))
    status = run(env, "hosts", "status")
    assert "builtin: pid" in status.stdout
    stopped = run(env, "hosts", "stop")
    assert "builtin: stopped (pid" in stopped.stdout
    for _ in range(100):
        if not host_pids_of(home / "run", "builtin"):
            break
        subprocess.run(["sleep", "0.1"])
    assert not host_pids_of(home / "run", "builtin")


def test_doctor(home, pulse):
    result = run(server_env(home, pulse), "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audio output: PulseAudio" in result.stdout
    assert "family builtin: installed" in result.stdout and "family qwen: not installed" in result.stdout
    assert "espeak-ng: 141 voices" in result.stdout and "GPU:" in result.stdout
    silent = run(server_env(home, None), "doctor")
    assert "audio output: none" in silent.stdout


def test_python_dash_m_and_version():
    import sys

    result = subprocess.run([sys.executable, "-m", "mcp_tts", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("mcp-tts ")
