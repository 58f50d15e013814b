"""The `mcp-tts` command as a person types it."""

from __future__ import annotations

import json
import os
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
                          (["say", "hi", "-s", "5"], "speed must be at most 2.0 (given 5.0)")]:
        result = run(env, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_say_says_the_host_stays_warm_and_how_to_stop_it(home):
    env = server_env(home, None)  # MCP_TTS_IDLE_TIMEOUT=120
    text = run(env, "say", "Hi.", "-o", str(home / "a.wav"))
    assert text.returncode == 0, text.stderr
    assert text.stderr.strip() == ("mcp-tts: the builtin engine host stays warm for 2 min of idle time; "
                                   "`mcp-tts hosts stop` stops it now")
    quiet = run(env, "say", "Hi.", "-o", str(home / "b.wav"), "--json")
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["status"] == "saved"


def test_say_after_play_names_the_speaker_too(home, pulse):
    result = run(server_env(home, pulse, MCP_TTS_SPEAKER_IDLE_TIMEOUT="90"), "say", "Hi.")
    assert result.returncode == 0, result.stderr
    assert "the builtin engine host stays warm for 2 min of idle time, the speaker for 90 s" in result.stderr
    no_device = run(server_env(home, None), "say", "Hi.")  # the speaker was asked, found no device: a file
    assert no_device.returncode == 0 and "the speaker for 2 min" in no_device.stderr, no_device.stderr


def test_an_unknown_language_is_named_as_a_language_with_the_accepted_ones(home):
    result = run(server_env(home, None), "say", "hi", "-l", "xx", "-o", str(home / "x.wav"))
    assert result.returncode == 2
    assert "unknown language 'xx' for the builtin backend" in result.stderr
    assert "language codes: af, " in result.stderr and " de, " in result.stderr and " ja, " in result.stderr
    assert "voice" not in result.stderr
    assert run(server_env(home, None), "say", "hi", "-l", "de", "-o", str(home / "de.wav")).returncode == 0


@pytest.mark.parametrize("args, message", [
    (["say", "hi", "-v", "nope-voice", "--json"], "unknown espeak voice 'nope-voice'"),
    (["say", "hi", "-s", "5", "--json"], "speed must be at most 2.0 (given 5.0)"),
    (["say", "hi", "-s", "fast", "--json"], "argument -s/--speed: invalid float value: 'fast'"),
    (["say", "hi", "-o", "/nonexistent-dir/x.wav", "--json"], "does not exist"),
    (["voices", "-b", "tortoise", "--json"], "unknown backend 'tortoise'"),
    (["voices", "--json", "remove", "nobody"], "no saved voice named 'nobody'"),
])
def test_json_errors_are_json_on_stdout(home, args, message):
    result = run(server_env(home, None), *args)
    assert result.returncode == 2 and result.stderr == "", result.stderr
    error = json.loads(result.stdout)
    assert list(error) == ["error"] and message in error["error"], error


def test_errors_name_the_cli_s_own_commands_not_internal_calls(home):
    env = server_env(home, None)
    for args in (["say", "hi", "-v", "nope-voice"], ["say", "hi", "-v", "en-us+nosuchvariant"]):
        result = run(env, *args, "-o", str(home / "x.wav"))
        assert result.returncode == 2
        assert "mcp-tts voices -b builtin" in result.stderr, result.stderr
        assert "voices()" not in result.stderr and "variants()" not in result.stderr
        assert "list_voices(" not in result.stderr


def test_mcp_tts_alone_prints_the_help():
    result = subprocess.run([MCP_TTS], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr == ""
    assert result.stdout.startswith("usage: mcp-tts")
    for command in ("serve", "say", "voices", "install", "hosts", "doctor"):
        assert f"\n    {command} " in result.stdout, command


def _actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from ((f"{name} {where}", a) for where, a in _actions(child))
            for choice in action._choices_actions:
                yield choice.dest, choice
        else:
            yield "", action


def test_every_option_and_subcommand_has_help():
    from mcp_tts.cli import build_parser

    missing = [f"{where}{action.dest}" for where, action in _actions(build_parser()) if not action.help]
    assert missing == []


def test_help_agrees_with_the_code():
    from mcp_tts.voices import REFERENCE_SECONDS

    add = subprocess.run([MCP_TTS, "voices", "add", "--help"], capture_output=True, text=True, timeout=30)
    assert add.returncode == 0
    assert f"{REFERENCE_SECONDS[0]:.0f}-{REFERENCE_SECONDS[1]:.0f} s" in " ".join(add.stdout.split())
    say = " ".join(subprocess.run([MCP_TTS, "say", "--help"], capture_output=True, text=True).stdout.split())
    for option in ("-v VOICE", "-b BACKEND", "-m MODEL", "-l LANGUAGE", "-i INSTRUCT", "-s SPEED", "-o FILE",
                   "--raw", "--json"):
        assert option in say, option
    assert "speaking rate, 0.5-2.0; 1.0 is normal" in say and "`mcp-tts voices`" in say


def test_voices_add_remove_and_the_duplicate_name_names_remove(home, tmp_path):
    import numpy as np

    env = server_env(home, None)
    t = np.arange(24000 * 3) / 24000
    sf.write(tmp_path / "me.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24000)
    added = run(env, "voices", "add", "me", "--audio", str(tmp_path / "me.wav"), "--text", "Hello there.")
    assert added.returncode == 0 and "saved voice 'me'" in added.stdout, added.stderr
    again = run(env, "voices", "add", "me", "--audio", str(tmp_path / "me.wav"), "--text", "Hello there.")
    assert again.returncode == 2 and "`mcp-tts voices remove me`" in again.stderr, again.stderr
    removed = run(env, "voices", "remove", "me")
    assert removed.returncode == 0 and removed.stdout.startswith("removed voice 'me'"), removed.stderr
    as_json = run(env, "voices", "add", "me2", "--audio", str(tmp_path / "me.wav"), "--text", "Hi.", "--json")
    assert json.loads(as_json.stdout)["name"] == "me2", as_json.stderr
    gone_json = run(env, "voices", "remove", "me2", "--json")
    assert json.loads(gone_json.stdout) == {"removed": "me2", "path": str(home / "data" / "voices" / "me2")}
    assert not (home / "data" / "voices" / "me").exists()
    assert [p.name for p in (home / "data" / "voices").iterdir()] == []
    gone = run(env, "voices", "remove", "me")
    assert gone.returncode == 2 and "no saved voice named 'me'; saved voices: (none)" in gone.stderr
    bad = run(env, "voices", "remove", "../etc")
    assert bad.returncode == 2 and "not accepted" in bad.stderr


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
    assert silent.stderr == "", silent.stderr  # ALSA's "cannot find card '0'" lines are not shown


def test_doctor_shows_library_noise_when_asked(home):
    loud = run(server_env(home, None), "--log-level", "INFO", "doctor")
    assert loud.returncode == 0
    if not os.path.exists("/dev/snd"):  # no sound card: ALSA complains, and INFO lets it through
        assert "ALSA lib" in loud.stderr


def test_python_dash_m_and_version():
    import sys

    result = subprocess.run([sys.executable, "-m", "mcp_tts", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("mcp-tts ")
