"""The say plan, decided before any host is asked: pure, so tested directly, with no host, speaker or device."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mcp_tts.config import Settings
from mcp_tts.engines.contract.catalog import CLONING_BACKENDS, QWEN_SPEAKERS
from mcp_tts.errors import TTSError
from mcp_tts.plan import SayPlan, plan_say
from mcp_tts.request import SayRequest, explain_validation
from mcp_tts.voices import SAMPLE, VoiceLibrary, VoiceManifest

ALL = ("builtin", "qwen-custom", "qwen-design", "qwen-base", "chatterbox", "chatterbox-turbo")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run")


@pytest.fixture
def library(settings) -> VoiceLibrary:
    library = VoiceLibrary(settings.voices_dir)
    library.save(VoiceManifest(name="grandpa", kind="params", backend="builtin", usable_with=["builtin"],
                               params={"voice": "en-gb", "pitch": 30}, sample=SAMPLE), {SAMPLE: b"RIFF"})
    library.save(VoiceManifest(name="narrator", kind="reference", backend="qwen-design",
                               usable_with=list(CLONING_BACKENDS), reference_audio=SAMPLE,
                               transcript="Hello there.", sample=SAMPLE), {SAMPLE: b"RIFF"})
    library.save(VoiceManifest(name="lively", kind="params", backend="chatterbox", usable_with=["chatterbox"],
                               params={"exaggeration": 1.5}), {})
    return library


def plan(settings, library, installed=("builtin",), session=(None, None), **request) -> SayPlan:
    """The plan for the request's fields; `session` is the session's (backend, model) after switch_backend."""
    return plan_say(SayRequest(**request), settings, library, installed, backend=session[0], model=session[1])


def refused(settings, library, *fragments, installed=("builtin",), **request) -> str:
    with pytest.raises(TTSError) as caught:
        plan(settings, library, installed, **request)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- where the audio goes, and when say returns --------------------------------------------------

def test_auto_plays_and_takes_a_file_when_there_is_no_device(settings, library):
    planned = plan(settings, library, text="Done.")
    assert (planned.destination, planned.file_when_no_device, planned.wait) == ("play", True, "start")
    headless = planned.without_device("no sound server")
    assert headless.destination == "file" and headless.file_path is None and headless.wait == "end"
    assert headless.notes == ("no audio device (no sound server): the speech was written to a file instead",)
    assert not headless.file_when_no_device
    assert planned.destination == "play"  # the plan itself is left as it was


def test_auto_without_a_device_keeps_wait_none(settings, library):
    assert plan(settings, library, text="Hi.", wait="none").without_device("none").wait == "none"


def test_play_without_a_device_is_an_error_naming_the_other_outputs(settings, library):
    planned = plan(settings, library, text="Hi.", output="play", wait="end")
    assert (planned.destination, planned.file_when_no_device, planned.wait) == ("play", False, "end")
    with pytest.raises(TTSError, match="cannot play: no sound server") as caught:
        planned.without_device("no sound server")
    assert "output='file'" in str(caught.value) and "output='audio'" in str(caught.value)


@pytest.mark.parametrize("wait, expected", [("start", "end"), ("end", "end"), ("none", "none")])
def test_file_waits_for_the_end_unless_told_not_to_wait(settings, library, wait, expected):
    planned = plan(settings, library, text="Hi.", output="file", wait=wait)
    assert planned.destination == "file" and planned.file_path is None and planned.wait == expected


@pytest.mark.parametrize("wait", ["start", "end", "none"])
def test_audio_always_waits_for_the_end(settings, library, wait):
    planned = plan(settings, library, text="Hi.", output="audio", wait=wait)
    assert planned.destination == "audio" and planned.wait == "end" and not planned.file_when_no_device


@pytest.mark.parametrize("wait", ["start", "end", "none"])
def test_play_keeps_the_wait_asked_for(settings, library, wait):
    assert plan(settings, library, text="Hi.", output="play", wait=wait).wait == wait


def test_a_file_path_makes_auto_a_file(settings, library):
    planned = plan(settings, library, text="Hi.", file_path="~/notes/hello.flac")
    assert planned.destination == "file" and planned.file_path == Path("~/notes/hello.flac")
    assert not planned.file_when_no_device and planned.wait == "end" and not planned.overwrite
    assert plan(settings, library, text="Hi.", file_path="out", output="file").file_path == Path("out")


def test_the_settings_output_is_the_default(settings, library):
    settings.output = "audio"
    assert plan(settings, library, text="Hi.").destination == "audio"
    assert plan(settings, library, text="Hi.", output="play").destination == "play"
    settings.output = "file"
    assert plan(settings, library, text="Hi.", output=None).destination == "file"  # None: unset, as before


@pytest.mark.parametrize("request_, fragments", [
    ({"output": "play", "file_path": "/tmp/x.wav"}, ["file_path goes with output='file' (or 'auto')", "'play'"]),
    ({"output": "audio", "file_path": "/tmp/x.wav"}, ["file_path goes with output='file'", "not output='audio'"]),
    ({"file_path": "/tmp/x.mp3"}, ["cannot write audio to '/tmp/x.mp3'", ".wav, .flac, .ogg"]),
    ({"file_path": "  "}, ["output path is empty", ".wav"]),
    ({"file_path": "a\x00.wav"}, ["output path is empty"]),
])
def test_bad_output_requests(settings, library, request_, fragments):
    refused(settings, library, *fragments, text="Hi.", **request_)


def test_an_unknown_output_in_the_settings_is_refused(settings, library):
    settings.output = "speakers"
    refused(settings, library, "output 'speakers' is not accepted", "auto, play, file, audio", text="Hi.")


# --- text for the ear ----------------------------------------------------------------------------

def test_text_is_shaped_for_speech_unless_raw(settings, library):
    markdown = "## Done\n- Fixed `parse_config()` ✅"
    shaped = plan(settings, library, text=markdown).text
    assert "##" not in shaped and "`" not in shaped and "parse config" in shaped
    assert plan(settings, library, text=f"  {markdown}  ", raw=True).text == markdown  # stripped only


@pytest.mark.parametrize("text, fragments", [
    ("", ["empty"]), (" \n\t", ["empty or only whitespace"]), ("✅ 🎉", ["nothing left to speak", "raw=true"]),
    ("beep\x07", ["control character U+0007", "printable"]), ("x" * 5001, ["5001 characters", "at most 5000"]),
])
def test_bad_text(settings, library, text, fragments):
    refused(settings, library, *fragments, text=text)


def test_the_text_limit_is_the_settings(settings, library):
    settings.max_text_chars = 10
    refused(settings, library, "11 characters", "at most 10", text="x" * 11)


# --- voice, backend and model --------------------------------------------------------------------

def test_defaults_come_from_the_settings_then_the_session(settings, library):
    planned = plan(settings, library, text="Hi.")
    assert (planned.backend, planned.model, planned.voice, planned.voice_params) == ("builtin", None, None, {})
    settings.voice = "en-gb+f3"
    assert plan(settings, library, text="Hi.").voice == "en-gb+f3"
    session = ("qwen-custom", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    switched = plan(settings, library, ALL, session, text="Hi.", voice="Vivian")
    assert (switched.backend, switched.model, switched.service) == (*session, "qwen")
    other = plan(settings, library, ALL, session, text="Hi.", backend="chatterbox")
    assert (other.backend, other.model) == ("chatterbox", None)  # another backend: its own default model


def test_preset_voices_and_options_pass_through(settings, library):
    planned = plan(settings, library, ALL, text="Hi.", backend="qwen-custom", voice=QWEN_SPEAKERS[0],
                   language="en", instruct="cheerful", speed=1.5, model="Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice")
    assert (planned.voice, planned.language, planned.instruct, planned.speed) == (
        "Vivian", "en", "cheerful", 1.5)
    assert planned.model == "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice" and planned.notes == ()


def test_a_saved_params_voice(settings, library):
    planned = plan(settings, library, text="Hi.", voice="grandpa")
    assert (planned.backend, planned.voice, planned.voice_params) == ("builtin", None,
                                                                       {"voice": "en-gb", "pitch": 30})


def test_a_designed_voice_is_spoken_by_qwen_base_where_qwen_is_installed(settings, library):
    planned = plan(settings, library, ("builtin", "qwen-custom", "qwen-design", "qwen-base"), text="Hi.",
                   voice="narrator")
    assert planned.backend == "qwen-base" and planned.voice is None and planned.service == "qwen"
    assert planned.voice_params == {
        "reference_audio": str(settings.voices_dir / "narrator" / SAMPLE), "transcript": "Hello there.",
        "voice_name": "narrator", "prompt_cache_dir": str(settings.data_dir / "cache" / "clone-prompts")}


def test_a_saved_voice_prefers_the_session_backend_then_an_installed_one(settings, library):
    assert plan(settings, library, ALL, ("chatterbox-turbo", None), text="Hi.",
                voice="narrator").backend == "chatterbox-turbo"
    assert plan(settings, library, ("builtin", "chatterbox", "chatterbox-turbo"), text="Hi.",
                voice="narrator").backend == "chatterbox"
    # none installed: its first backend, whose family the caller is then told to install
    assert plan(settings, library, ("builtin",), text="Hi.", voice="narrator").backend == "qwen-base"


def test_a_saved_voice_with_a_backend_it_does_not_suit(settings, library):
    refused(settings, library, "saved voice 'grandpa' works with builtin, not 'qwen-base'", installed=ALL,
            text="Hi.", voice="grandpa", backend="qwen-base")


def test_expression_goes_to_chatterbox_and_is_noted_elsewhere(settings, library):
    lively = plan(settings, library, ALL, text="Hi.", voice="lively", exaggeration=0.7, temperature=0.5)
    assert lively.backend == "chatterbox"
    assert lively.voice_params == {"exaggeration": 0.7, "temperature": 0.5}  # the call's over the voice's
    builtin = plan(settings, library, text="Hi.", cfg_weight=0.3, exaggeration=1.0)
    assert builtin.voice_params == {}
    assert builtin.notes == ("cfg_weight, exaggeration ignored: only the chatterbox backends take them",)


def test_expression_in_its_earlier_spelling(settings, library):
    request = SayRequest(text="Hi.", expression={"cfg_weight": 0.2})
    assert request.cfg_weight == 0.2 and request.expression == {"cfg_weight": 0.2}


@pytest.mark.parametrize("request_, fragments", [
    ({"voice": ""}, ["voice is empty", "list_voices"]),
    ({"voice": "../../etc/passwd"}, ["not a voice name", "'/'"]),
    ({"voice": "a\\b"}, ["not a voice name"]),
    ({"backend": "tortoise"}, ["unknown backend 'tortoise'", "builtin", "qwen-base", "chatterbox-turbo"]),
    ({"model": "tacotron"}, ["unknown model 'tacotron' for backend 'builtin'", "espeak-ng"]),
    ({"backend": "qwen-custom", "model": "Qwen/Qwen3-TTS-12Hz-1.7B-Base"},
     ["unknown model", "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "absolute path of a local checkpoint"]),
])
def test_bad_voice_backend_or_model(settings, library, request_, fragments):
    refused(settings, library, *fragments, installed=ALL, text="Hi.", **request_)


def test_a_local_checkpoint_path_is_left_to_the_executor(settings, library, tmp_path):
    planned = plan(settings, library, ALL, text="Hi.", backend="qwen-base", model=str(tmp_path / "nowhere"))
    assert planned.model == str(tmp_path / "nowhere")  # read (and checked) where it is loaded


def test_an_unknown_voice_name_is_the_engines_to_judge(settings, library):
    planned = plan(settings, library, text="Hi.", voice="no-such-voice")
    assert planned.voice == "no-such-voice" and planned.voice_params == {}


def test_an_unreadable_saved_voice(settings, library):
    (settings.voices_dir / "grandpa" / "manifest.json").write_text("{not json")
    refused(settings, library, "saved voice 'grandpa' is unreadable", "manifest.json", text="Hi.", voice="grandpa")


def test_planning_touches_nothing(settings, library, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    plan(settings, library, ALL, text="Hi.", voice="narrator", output="file", file_path=str(tmp_path / "x.wav"))
    assert sorted(p for p in tmp_path.rglob("*")) == before


# --- the request model, shared by the tool and the command line ---------------------------------

@pytest.mark.parametrize("field, value, fragments", [
    ("speed", 5, ["speed must be at most 2.0 (given 5)"]),
    ("output", "speakers", ["output", "'auto', 'play', 'file' or 'audio'"]),
    ("wait", "forever", ["wait", "'start', 'end' or 'none'"]),
    ("voice", "v" * 201, ["voice", "at most 200 characters"]),
    ("instruct", "x" * 1001, ["instruct", "1000"]),
    ("temperature", 0.0, ["temperature must be at least 0.05"]),
    ("raw", "maybe", ["raw must be true or false (given 'maybe')"]),
])
def test_the_request_model_names_the_field_and_what_is_accepted(field, value, fragments):
    with pytest.raises(ValidationError) as caught:
        SayRequest(text="Hi.", **{field: value})
    message = explain_validation(caught.value)
    for fragment in fragments:
        assert fragment in message, message


def test_overwrite_is_not_a_tool_parameter():
    assert SayRequest.TOOL_HIDDEN == ("overwrite",) and "overwrite" in SayRequest.model_fields
