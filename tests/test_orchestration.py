"""One server's speech orchestration, in-process: Speech with the real Hosts and HostConnection, against a
scripted engine host and a scripted speaker that speak the real wire protocol over real Unix sockets
(tests/support/scripted.py). The queue, stop and cancel, the wait modes, the no-device fallback, file
output, hosts lost mid-say and engines still loading; milliseconds each, no process, no sound server."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
import pytest
import soundfile as sf

from mcp_tts import paths
from mcp_tts.engines.contract import atomic
from mcp_tts.engines.contract.protocol import Abort, Cancel, Enqueue, StopPlayback, Synthesize
from mcp_tts.errors import HostError, TTSError
from mcp_tts.speakable import speakable
from mcp_tts.speech import SayRequest
from tests.support.scripted import Script

pytestmark = pytest.mark.anyio

PCM16 = 1 / 32767  # what a 16-bit WAV keeps of a float sample


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.002)


async def heard_of(peer, kind: type, utt_id: str) -> None:
    """Until `peer` has received a `kind` message about utterance `utt_id` (messages arrive a moment after
    the call that sent them returns)."""
    await until(lambda: utt_id in [m.id for m in peer.of(kind)])


async def say(rig, text: str = "Hello.", roots: tuple[Path, ...] | None = None, **options):
    """A say from a client whose MCP roots are `roots` (None: it declares none)."""
    folders = paths.for_client(rig.settings, [p.as_uri() for p in roots]) if roots is not None else None
    result, audio = await rig.speech.say(SayRequest(text=text, **options), folders=folders)
    return result


# --- the queue ----------------------------------------------------------------------------------


async def test_says_play_one_after_another_in_the_order_said(scripted):
    scripted.speaker.pace = 1.0  # each 50 ms chunk takes 50 ms to play
    results = [await say(scripted, f"Message {i}.", wait="none") for i in range(3)]
    assert [r.status for r in results] == ["queued"] * 3
    assert [r.queue_position for r in results] == [0, 1, 2]
    ids = [r.utterance_id for r in results]
    assert [m.id for m in scripted.speaker.of(Enqueue)] == ids
    await until(lambda: len(scripted.speaker.heard) == 3 and scripted.speaker.heard[-1].finished)
    heard = scripted.speaker.heard
    assert [h.id for h in heard] == ids
    for one, next_one in zip(heard, heard[1:], strict=False):
        assert one.finished <= next_one.started  # never two at once
    expected = Script().audio()
    for h in heard:  # each utterance's own audio, whole, not mixed with another's
        np.testing.assert_array_equal(h.audio(), expected)
        assert not h.interrupted


async def test_a_say_waiting_for_its_end_waits_behind_the_one_playing(scripted):
    scripted.speaker.pace = 1.0
    first = await say(scripted, "First.", wait="start")
    second = await say(scripted, "Second.", wait="end")
    assert first.status == "playing" and second.status == "played"
    assert second.queue_position == 1
    (a, b) = scripted.speaker.heard
    assert second.started_clock == b.started >= a.finished


async def test_wait_modes(scripted):
    scripted.speaker.pace = 1.0
    none = await say(scripted, wait="none")
    assert none.status == "queued" and none.started_clock is None and none.audio_seconds is None
    await until(lambda: not scripted.speaker.queue)
    start = await say(scripted, wait="start")
    assert start.status == "playing" and start.started_clock is not None and start.ended_clock is None
    assert start.time_to_first_audio_ms is not None
    await until(lambda: not scripted.speaker.queue)
    end = await say(scripted, wait="end")
    assert end.status == "played" and end.ended_clock > end.started_clock
    assert end.audio_seconds == pytest.approx(0.1) and end.device == "scripted: null sink"
    # a file or the audio is only whole at the end: those wait for it whatever was asked
    attached = await say(scripted, output="audio", wait="none")
    assert attached.status == "attached" and attached.audio_seconds == pytest.approx(0.1)


# --- stop and cancel ----------------------------------------------------------------------------


async def test_stop_interrupts_the_playing_one_and_drops_the_queued(scripted):
    scripted.speaker.pace = 1.0
    scripted.engine.default = Script(chunks=20, pause=0.005)  # 1 s of audio
    first = await say(scripted, "First.", wait="start")
    second = await say(scripted, "Second.", wait="none")
    assert (first.status, second.status) == ("playing", "queued")
    stopped = await scripted.speech.stop()
    assert stopped.stopped == 2 and stopped.speaker_running
    await until(lambda: not scripted.speaker.queue)
    assert [m.client for m in scripted.speaker.of(StopPlayback)] == [scripted.speech.client_id]
    for utt in (first, second):  # the host heard it
        await heard_of(scripted.engine, Cancel, utt.utterance_id)
    assert [(h.id, h.interrupted) for h in scripted.speaker.heard] == [(first.utterance_id, True)]
    scripted.engine.default = Script()
    after = await say(scripted, "Still serving.", wait="end")
    assert after.status == "played"


async def test_stop_calls_at_once_all_answer_and_the_server_keeps_serving(scripted):
    scripted.speaker.pace = 1.0
    await say(scripted, "Something long enough to stop.", wait="start")
    await say(scripted, "And more queued.", wait="none")
    results = []

    async def stop() -> None:
        results.append(await scripted.speech.stop())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(stop)
    assert len(results) == 5 and all(r.speaker_running for r in results)
    await until(lambda: not scripted.speaker.queue)
    assert (await say(scripted, "Fine.", wait="end")).status == "played"


async def test_stop_catches_a_say_still_starting(scripted):
    loading = anyio.Event()
    scripted.engine.scripts.append(Script(hold=loading))
    results = {}

    async def speak():
        results["say"] = await say(scripted, "Caught on its way.", wait="end")

    async with anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await until(lambda: scripted.engine.of(Synthesize))
        stopped = await scripted.speech.stop()
        loading.set()
    assert stopped.stopped == 0  # nothing was speaking yet ...
    result = results["say"]
    assert result.status == "interrupted"  # ... yet the say that was starting is dropped too
    await heard_of(scripted.engine, Cancel, result.utterance_id)
    await heard_of(scripted.speaker, Abort, result.utterance_id)
    assert scripted.speaker.heard == []


async def test_a_cancelled_say_cancels_its_synthesis_and_playback(scripted):
    """The MCP request is cancelled (the agent gave up on it): the host and the speaker are told."""
    scripted.speaker.pace = 1.0
    scripted.engine.scripts.append(Script(chunks=40, pause=0.002))
    async with anyio.create_task_group() as tg:
        async def long_say():
            await say(scripted, "Too long to wait for.", wait="end")
        tg.start_soon(long_say)
        await until(lambda: scripted.speaker.queue and scripted.speaker.queue[0].started is not None)
        tg.cancel_scope.cancel()  # once it plays: the agent gives up on it
    (request,) = scripted.engine.of(Synthesize)
    await heard_of(scripted.engine, Cancel, request.id)
    await heard_of(scripted.speaker, Abort, request.id)
    await until(lambda: not scripted.speaker.queue)
    assert scripted.speaker.heard[0].interrupted
    after = await say(scripted, "Next.", wait="end")  # not held behind the rest of the long one
    assert after.status == "played" and after.queue_position == 0


# --- where the audio goes -----------------------------------------------------------------------


async def test_no_device_falls_back_to_a_file_for_auto_only(scripted):
    scripted.speaker.device = None
    auto, audio = await scripted.speech.say(SayRequest(text="Nobody can hear this."))
    assert auto.output == "file" and auto.status == "saved" and audio is None
    assert any("no audio device" in note for note in auto.notes)
    saved, _ = sf.read(auto.file_path, dtype="float32")
    assert auto.file_path.startswith(str(scripted.settings.recordings_dir))
    np.testing.assert_allclose(saved, Script().audio(), atol=PCM16)

    with pytest.raises(TTSError, match="cannot play: no audio device .*output='file'"):
        await say(scripted, "Nobody can hear this.", output="play")
    await heard_of(scripted.engine, Cancel, scripted.engine.of(Synthesize)[-1].id)  # the engine is freed

    attached, wav = await scripted.speech.say(SayRequest(text="But this comes back.", output="audio"))
    assert attached.output == "audio" and attached.audio_attached
    data, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(data, Script().audio(), atol=PCM16)
    assert scripted.speaker.heard == []


async def test_file_output_writes_what_the_engine_made(scripted, tmp_path):
    path = tmp_path / "out.wav"
    result = await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))  # a file waits for its end
    assert result.status == "saved" and result.file_path == str(path.resolve())
    data, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(data, Script().audio(), atol=PCM16)
    later = await say(scripted, output="file", file_path=str(tmp_path / "later.wav"), wait="none", roots=(tmp_path,))
    assert later.status == "synthesizing"  # ... unless told not to wait at all
    await until(lambda: (tmp_path / "later.wav").stat().st_size > 0)
    # output auto with a path: the file; a name without a suffix gets .wav, as nothing has that name
    auto = await say(scripted, file_path=str(tmp_path / "named"), roots=(tmp_path,))
    assert auto.output == "file" and auto.file_path == str(tmp_path / "named.wav")
    flac = await say(scripted, output="file", file_path="out.flac", roots=(tmp_path,))  # relative: to the root
    assert flac.file_path == str(tmp_path / "out.flac") and sf.info(flac.file_path).format == "FLAC"
    assert scripted.speaker.of(Enqueue) == []


@pytest.mark.parametrize(("name", "options", "message"), [
    ("exists.wav", {}, "the file exists and is not replaced"),
    ("exists", {}, "names an existing file and has no audio suffix; give a new name ending in .wav, .flac, .ogg"),
    ("sub", {}, "it is a directory"),
    ("missing/out.wav", {}, "the folder '{tmp}/root/missing' does not exist"),
    ("exists.wav/out.wav", {}, "a part of the path is a file, not a folder"),
    ("x" * 256 + ".wav", {}, "the name is too long (a file or folder name holds at most 255 bytes"),
    ("out.mp3", {}, "must end in"),
    ("../outside.wav", {}, "it is outside the folders this server may use: '{tmp}/root'"),
    ("link/out.wav", {}, "it is outside the folders this server may use"),
    ("to-text.wav", {}, "must end in .wav, .flac, .ogg"),  # a symlink to a name of another kind
    ("out.wav", {"output": "play"}, "not output='play'"),
    ("out.wav", {"output": "audio"}, "not output='audio'"),
])
async def test_file_output_refusals_come_before_any_synthesis(scripted, tmp_path, name, options, message):
    root = tmp_path / "root"
    root.mkdir()
    for precious in ("exists.wav", "exists"):
        (root / precious).write_bytes(b"precious")
    (root / "sub").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")  # a symlink out of the root
    (root / "to-text.wav").symlink_to(root / "notes.txt")
    request = {"output": "file", **options}
    with pytest.raises(TTSError) as caught:
        await say(scripted, file_path=str(root / name), roots=(root,), **request)
    assert message.format(tmp=tmp_path) in str(caught.value)
    if "/" in name or name.startswith("x"):
        assert str(root / name) in str(caught.value)  # the path named as given
    assert scripted.engine.of(Synthesize) == []
    assert (root / "exists.wav").read_bytes() == (root / "exists").read_bytes() == b"precious"
    assert sorted(p.name for p in root.iterdir()) == ["exists", "exists.wav", "link", "sub", "to-text.wav"]
    assert list((tmp_path / "elsewhere").iterdir()) == [] and not (tmp_path / "outside.wav").exists()


async def test_the_refusal_names_the_allowed_folders_and_how_to_widen_them(scripted, tmp_path):
    with pytest.raises(TTSError) as caught:
        await say(scripted, output="file", file_path="/etc/passwd.wav", roots=(tmp_path,))
    message = str(caught.value)
    assert f"{str(tmp_path)!r} (the client's MCP roots)" in message
    assert f"{str(scripted.settings.data_dir)!r} (the data dir)" in message
    assert "MCP_TTS_ALLOWED_DIRS" in message and not os.path.exists("/etc/passwd.wav")
    with pytest.raises(TTSError, match="no audio suffix"):  # never /etc/passwd.wav, with any roots
        await scripted.speech.say(SayRequest(text="Hi.", file_path="/etc/passwd"), folders=paths.ANYWHERE)
    scripted.settings.allowed_dirs = [tmp_path / "more"]
    (tmp_path / "more").mkdir()
    widened = await say(scripted, output="file", file_path=str(tmp_path / "more" / "x.wav"), roots=())
    assert widened.status == "saved"


async def test_two_says_to_one_new_name_the_second_is_refused_at_once(scripted, tmp_path):
    path = tmp_path / "race.wav"
    loading = anyio.Event()
    scripted.engine.scripts.append(Script(hold=loading))
    results = {}

    async def first() -> None:
        results["first"] = await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await until(lambda: scripted.engine.of(Synthesize))
        assert path.exists() and path.stat().st_size == 0  # the name is held while the first is made
        with pytest.raises(TTSError, match="the file exists and is not replaced"):
            await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))
        assert len(scripted.engine.of(Synthesize)) == 1  # refused before any synthesis
        loading.set()
    assert results["first"].status == "saved"
    np.testing.assert_allclose(sf.read(path, dtype="float32")[0], Script().audio(), atol=PCM16)


async def test_a_file_put_at_the_held_name_meanwhile_is_never_replaced(scripted, tmp_path):
    path = tmp_path / "held.wav"
    loading = anyio.Event()
    scripted.engine.scripts.append(Script(hold=loading))
    errors = []

    async def speak() -> None:
        with pytest.raises(TTSError) as caught:
            await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))
        errors.append(str(caught.value))

    async with anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await until(lambda: scripted.engine.of(Synthesize))
        (tmp_path / "theirs").write_bytes(b"another program's file")
        os.replace(tmp_path / "theirs", path)  # replaces the empty placeholder
        loading.set()
    assert path.read_bytes() == b"another program's file"
    assert f"cannot write audio to {str(path)!r}" in errors[0] and "EEXIST" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held.wav"]  # no staging file left


@pytest.mark.parametrize("how", ["engine_fails", "stopped", "host_lost"])
async def test_a_say_that_never_writes_its_file_gives_the_name_back(scripted, tmp_path, how):
    path = tmp_path / "given-back.wav"
    script = {"engine_fails": Script(chunks=4, fail="engine_error", fail_after=2),
              "stopped": Script(chunks=40, pause=0.01), "host_lost": Script(drop_after=0)}[how]
    scripted.engine.scripts += [script, script] if how == "host_lost" else [script]  # lost: lost again on the retry
    if how == "stopped":
        result = await say(scripted, output="file", file_path=str(path), roots=(tmp_path,), wait="none")
        await until(path.exists)
        await scripted.speech.stop()
        await heard_of(scripted.engine, Cancel, result.utterance_id)
    else:
        with pytest.raises(TTSError):
            await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))
    await until(lambda: not path.exists())
    assert list(tmp_path.iterdir()) == []
    again = await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))  # the name is free
    assert again.status == "saved"


@pytest.mark.parametrize("code, cause", [
    (errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"), (errno.EDQUOT, "disk quota"),
])
async def test_a_write_that_fails_names_the_cause_and_the_path(scripted, tmp_path, monkeypatch, code, cause):
    path = tmp_path / "full.wav"

    def failing(fd, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic, "_write_all", failing)  # the staging file's write: the disk says no
    with pytest.raises(TTSError) as caught:
        await say(scripted, output="file", file_path=str(path), roots=(tmp_path,))
    message = str(caught.value)
    assert message.startswith(f"cannot write audio to {str(path)!r}: {cause}"), message
    assert errno.errorcode[code] in message
    assert list(tmp_path.iterdir()) == []  # neither the placeholder nor a staging file is left


async def test_design_voice_into_a_data_dir_it_cannot_write_names_the_cause_and_the_path(scripted, tmp_path):
    scripted.settings.data_dir.mkdir(parents=True, exist_ok=True)  # the start-up cleanup may make it first
    scripted.settings.voices_dir.write_text("a file where the voices folder should be")
    with pytest.raises(TTSError) as caught:
        await scripted.speech.design_voice("a calm voice", "calm", None, "builtin")
    target = scripted.settings.voices_dir / "calm"
    assert str(caught.value).startswith(f"cannot save the voice 'calm' to {str(target)!r}: a part of the path is "
                                        f"a file, not a folder")


async def test_overwrite_replaces_a_file_when_asked(scripted, tmp_path):
    """The CLI's -o: it acts for the person at the shell, anywhere, and replaces what it is told to."""
    path = tmp_path / "again.wav"
    path.write_bytes(b"old")
    result, _ = await scripted.speech.say(SayRequest(text="Hi.", output="file", file_path=str(path), overwrite=True),
                                          folders=paths.ANYWHERE)
    assert result.status == "saved" and sf.info(path).frames == len(Script().audio())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.wav"]


async def test_recordings_are_private_and_pruned_of_only_our_own(scripted, monkeypatch):
    from mcp_tts import datadir

    monkeypatch.setattr(datadir, "KEPT_RECORDINGS", 3)
    scripted.speaker.device = None  # every say becomes a recording
    folder = scripted.settings.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    foreign = ["notes.wav", "20200101-000000-zzzzzzzzzzzz.wav", "20200101-000000-0123456789ab.wav.bak"]
    for name in foreign:
        (folder / name).write_bytes(b"not ours")
    (folder / "20200101-000000-aaaaaaaaaaaa.wav").mkdir()  # our pattern, but not a regular file
    made = [(await say(scripted, f"Number {i}.")).file_path for i in range(5)]
    kept = sorted(p.name for p in folder.iterdir() if p.name not in foreign and p.is_file())
    assert kept == sorted(os.path.basename(p) for p in made[-3:])
    assert all((folder / name).read_bytes() == b"not ours" for name in foreign)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all((folder / name).stat().st_mode & 0o777 == 0o600 for name in kept)


async def test_a_symlinked_recordings_folder_is_never_pruned(scripted, tmp_path, monkeypatch):
    from mcp_tts import datadir

    monkeypatch.setattr(datadir, "KEPT_RECORDINGS", 1)
    scripted.speaker.device = None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = elsewhere / "20200101-000000-0123456789ab.wav"  # named like ours, yet never written by us
    theirs.write_bytes(b"someone's")
    scripted.settings.data_dir.mkdir(parents=True, exist_ok=True)
    scripted.settings.recordings_dir.symlink_to(elsewhere)
    for i in range(2):
        await say(scripted, f"Number {i}.")
    assert theirs.read_bytes() == b"someone's" and len(list(elsewhere.iterdir())) == 3


async def test_the_engine_receives_speakable_text_unless_raw(scripted):
    markdown = "## Done\n- Fixed `parse_config()` in `src/utils/config_loader.py` ✅"
    await say(scripted, markdown, output="audio")
    await say(scripted, markdown, output="audio", raw=True)
    assert scripted.engine.texts() == [speakable(markdown), markdown]
    with pytest.raises(TTSError, match="raw=true"):
        await say(scripted, "✅ 🎉")
    assert len(scripted.engine.texts()) == 2


# --- failures -----------------------------------------------------------------------------------


async def test_engine_failures_are_clear_errors_and_the_server_keeps_serving(scripted):
    scripted.engine.scripts.append(Script(fail="unknown_voice", fail_message="no voice 'x'"))
    with pytest.raises(TTSError, match=r"no voice 'x' \(every voice: see list_voices, or `mcp-tts voices -b builtin`"):
        await say(scripted, voice="x")
    scripted.engine.scripts.append(Script(chunks=4, fail="engine_error", fail_message="out of ideas", fail_after=2))
    with pytest.raises(TTSError, match="out of ideas"):
        await say(scripted, "Half way.", wait="end")
    await heard_of(scripted.speaker, Abort, scripted.engine.of(Synthesize)[-1].id)  # it does not block the queue
    ok = await say(scripted, "Fine again.", wait="end")
    assert ok.status == "played"


async def test_engine_host_lost_mid_say_is_a_clear_error_and_the_next_say_reconnects(scripted):
    scripted.engine.scripts.append(Script(chunks=4, pause=0.005, drop_after=2))
    with pytest.raises(TTSError, match="speech cut off: the builtin engine host .* went away"):
        await say(scripted, "Cut off.", wait="end")
    scripted.engine.scripts.append(Script(drop_after=0))  # gone before it began: sent once more, and spoken
    retried = await say(scripted, "Started on the second try.", wait="end")
    assert retried.status == "played" and scripted.engine.connections == 3
    scripted.engine.scripts += [Script(drop_after=0), Script(drop_after=0)]  # twice: an error
    with pytest.raises(HostError, match="went away"):
        await say(scripted, "Never started.")
    assert scripted.engine.connections == 4
    ok = await say(scripted, "Back again.", wait="end")
    assert ok.status == "played" and scripted.engine.connections == 5
    assert not scripted.hosts.spawned


async def test_speaker_lost_mid_playback_is_a_clear_error_and_frees_the_engine(scripted):
    scripted.speaker.pace = 1.0
    scripted.engine.scripts.append(Script(chunks=20, pause=0.005))
    results = {}

    async def speak():
        with pytest.raises(TTSError) as caught:
            await say(scripted, "Cut off.", wait="end")
        results["error"] = str(caught.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(speak)
        await until(lambda: scripted.speaker.heard)
        scripted.speaker.drop_connections()
    assert "speaker process" in results["error"] and "went away" in results["error"]
    await heard_of(scripted.engine, Cancel, scripted.engine.of(Synthesize)[0].id)
    ok = await say(scripted, "Back again.", wait="end")
    assert ok.status == "played" and scripted.speaker.connections == 2


# --- engines still loading ----------------------------------------------------------------------


async def test_a_say_while_the_engine_loads_hears_progress_then_plays(scripted):
    loaded = anyio.Event()
    scripted.engine.scripts.append(Script(loading=["downloading the model", "loading the model"], hold=loaded))
    heard: list[str] = []
    results = {}

    async def progress(message: str, done: float, total: float | None) -> None:
        heard.append(message)

    async def speak(name: str, wait: str) -> None:
        results[name], _ = await scripted.speech.say(SayRequest(text=name, wait=wait), progress)

    async with anyio.create_task_group() as tg:
        tg.start_soon(speak, "first", "start")
        await until(lambda: len(heard) == 2)
        tg.start_soon(speak, "second", "end")  # comes while the engine is still busy loading
        await anyio.sleep(0.02)
        assert results == {} and scripted.speaker.of(Enqueue) == []
        loaded.set()
    assert heard == ["downloading the model", "loading the model"]
    assert results["first"].status in ("playing", "played") and results["second"].status == "played"
    assert [h.id for h in scripted.speaker.heard] == [results["first"].utterance_id, results["second"].utterance_id]


async def test_list_voices_reports_what_the_host_describes(scripted):
    listed = await scripted.speech.list_voices("builtin")
    (entry,) = listed.backends
    assert entry.description == "a scripted engine" and [v.name for v in entry.voices] == ["scripted-voice"]


async def test_health_reports_what_the_host_says(scripted):
    scripted.engine.health_details = {"queued_or_running": 0, "resident_bytes": 123}
    conn = await scripted.hosts.get("builtin")
    report = await conn.health()
    assert report.service == "builtin" and report.details == {"queued_or_running": 0, "resident_bytes": 123}
