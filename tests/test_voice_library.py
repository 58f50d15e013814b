"""The voice library on disk: names that stay inside it, atomic saves, corrupt voices that hide no others."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mcp_tts import voices
from mcp_tts.engines.contract import atomic
from mcp_tts.errors import TTSError
from mcp_tts.voices import MANIFEST, SAMPLE, VoiceLibrary, VoiceManifest, check_name


def manifest(name: str, **extra) -> VoiceManifest:
    return VoiceManifest(name=name, kind="params", backend="builtin", usable_with=["builtin"],
                         params={"pitch": 50}, sample=SAMPLE, **extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.fixture
def library(tmp_path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices")


@pytest.mark.parametrize("name", ["a", "calm", "Calm-Voice_2", "v1.2", "a.", "a-", "0", "x" * 64])
def test_accepted_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", [
    "", ".", "..", "../evil", "a/../b", "a..b", "a/b", "/abs", "a\\b", "..\\evil", ".hidden", "-dash",
    "_under", "x" * 65, "a\x00b", "a b", " a", "a\t", "café", "日本", "ｆｕｌｌ", "١٢٣", "a:b", "a*", "~",
    None, 5, b"bytes",
], ids=repr)
def test_refused_names(name):
    with pytest.raises(TTSError, match="not accepted"):
        check_name(name)


@pytest.mark.parametrize("name", ["calm\n", "x" * 64 + "\n"], ids=repr)
def test_a_name_with_a_trailing_newline_is_refused(name):
    with pytest.raises(TTSError, match="not accepted"):
        check_name(name)


@pytest.mark.parametrize("name", ["..", "../evil", "a/b", ".hidden", ""])
def test_every_entry_point_refuses_a_bad_name_before_touching_disk(library, name):
    for call in (lambda: library.path(name), lambda: library.exists(name), lambda: library.get(name),
                 lambda: library.delete(name), lambda: library.save(manifest(name), {SAMPLE: b"x"})):
        with pytest.raises(TTSError, match="not accepted"):
            call()
    assert not library.root.exists()


def test_save_creates_a_folder_with_the_manifest_and_files(library):
    wav = voices.wav_bytes(np.zeros(160, dtype=np.float32), 16000)
    saved = manifest("calm", description="a calm voice", notes=["n1"])
    folder = library.save(saved, {SAMPLE: wav, "extra.bin": b"\x00\xff"})
    assert folder == library.root / "calm"
    assert entries(library.root) == ["calm"]
    assert entries(folder) == sorted([MANIFEST, SAMPLE, "extra.bin"])
    assert (folder / SAMPLE).read_bytes() == wav
    assert json.loads((folder / MANIFEST).read_text())["name"] == "calm"
    assert library.exists("calm")
    assert library.get("calm") == saved


def test_list_returns_every_saved_voice_in_name_order(library):
    assert library.list() == ([], [])  # no root folder yet
    for name in ["b", "a", "c.1"]:
        library.save(manifest(name), {SAMPLE: name.encode()})
    found, problems = library.list()
    assert [v.name for v in found] == ["a", "b", "c.1"]
    assert problems == []


def test_get_of_an_unknown_name_lists_the_saved_names(library):
    with pytest.raises(TTSError, match=r"no saved voice named 'nope'; saved voices: \(none\)"):
        library.get("nope")
    library.save(manifest("calm"), {})
    library.save(manifest("bright"), {})
    with pytest.raises(TTSError, match=r"no saved voice named 'nope'; saved voices: bright, calm"):
        library.get("nope")


def test_save_of_an_existing_name_refuses_and_leaves_it_unchanged(library):
    folder = library.save(manifest("calm", description="first"), {SAMPLE: b"first audio"})
    before = snapshot(folder)
    with pytest.raises(TTSError, match="'calm' already exists") as caught:
        library.save(manifest("calm", description="second"), {SAMPLE: b"second audio", "more.bin": b"x"})
    assert "remove it first with `mcp-tts voices remove calm`" in str(caught.value)
    assert snapshot(folder) == before
    assert entries(library.root) == ["calm"]
    assert library.get("calm").description == "first"


@pytest.mark.parametrize("files", [
    {SAMPLE: "not bytes"},
    {"a.bin": b"written first", "b.bin": 12345},
    {"a.bin": b"ok", "b.bin": None},
], ids=["str", "second_file_int", "second_file_none"])
def test_a_failure_mid_save_leaves_no_folder_and_no_temporary_folder(library, files):
    library.save(manifest("other"), {SAMPLE: b"kept"})
    with pytest.raises(TypeError):
        library.save(manifest("calm"), files)
    assert entries(library.root) == ["other"]
    assert not library.exists("calm")
    assert [v.name for v in library.list()[0]] == ["other"]


def test_an_interrupt_mid_save_leaves_nothing_behind(library, monkeypatch):
    def interrupted(path, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(voices.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        library.save(manifest("calm"), {SAMPLE: b"audio"})
    assert entries(library.root) == []


CORRUPT_MANIFESTS = {
    "bad_json": b"{ not json",
    "not_utf8": b"\xff\xfe\x00\x00",
    "empty": b"",
    "wrong_kind": json.dumps({**manifest("wrong_kind").model_dump(mode="json"), "kind": "magic"}).encode(),
    "missing_fields": json.dumps({"name": "missing_fields"}).encode(),
    "json_list": b"[]",
    "other_name": json.dumps(manifest("someone-else").model_dump(mode="json")).encode(),
}


@pytest.mark.parametrize("name", sorted(CORRUPT_MANIFESTS))
def test_a_corrupt_manifest_is_reported_and_skipped_while_the_others_list(library, name):
    library.save(manifest("aaa"), {SAMPLE: b"a"})
    library.save(manifest("zzz"), {SAMPLE: b"z"})
    folder = library.root / name
    folder.mkdir()
    (folder / MANIFEST).write_bytes(CORRUPT_MANIFESTS[name])
    found, problems = library.list()
    assert [v.name for v in found] == ["aaa", "zzz"]
    assert len(problems) == 1
    assert str(folder) in problems[0] and MANIFEST in problems[0] and "skipped" in problems[0]
    with pytest.raises(TTSError) as caught:
        library.get(name)
    assert "unreadable" in str(caught.value)
    assert str(folder / MANIFEST) in str(caught.value)


def test_a_folder_without_a_readable_manifest_is_reported(library):
    library.save(manifest("good"), {})
    (library.root / "no-manifest").mkdir()
    (library.root / "dir-manifest" / MANIFEST).mkdir(parents=True)
    found, problems = library.list()
    assert [v.name for v in found] == ["good"]
    assert len(problems) == 2
    assert "dir-manifest" in problems[0] and "no-manifest" in problems[1]
    with pytest.raises(TTSError, match="'no-manifest'; saved voices: good"):
        library.get("no-manifest")


def test_stray_files_and_dot_folders_in_the_root_are_ignored(library):
    library.save(manifest("good"), {})
    (library.root / "README.txt").write_text("not a voice")
    (library.root / "stray.json").write_text("{ broken")
    hidden = library.root / ".calm.abc123"  # what an interrupted save leaves behind
    hidden.mkdir()
    (hidden / MANIFEST).write_text(manifest("calm").model_dump_json())
    (library.root / ".deleted.x.y").mkdir()
    (library.root / ".git").mkdir()
    assert library.list() == ([library.get("good")], [])
    assert not library.exists("calm")


def test_delete_removes_the_voice_and_leaves_nothing_behind(library):
    library.save(manifest("calm"), {SAMPLE: b"audio"})
    library.save(manifest("kept"), {SAMPLE: b"audio"})
    assert library.delete("calm") == library.root / "calm"
    assert entries(library.root) == ["kept"]
    assert not library.exists("calm")
    with pytest.raises(TTSError, match="no saved voice named 'calm'; saved voices: kept"):
        library.delete("calm")
    library.save(manifest("calm", description="again"), {})  # the name is free again
    assert library.get("calm").description == "again"


def test_delete_removes_a_corrupt_voice(library):
    (library.root / "broken").mkdir(parents=True)
    (library.root / "broken" / MANIFEST).write_text("{")
    library.delete("broken")
    assert library.list() == ([], [])
    assert entries(library.root) == []


def test_two_threads_saving_one_name_one_wins_the_other_is_refused(library):
    for round_ in range(30):
        name = f"race{round_}"
        barrier = threading.Barrier(2)
        outcomes: dict[int, object] = {}

        def save(who: int) -> None:
            barrier.wait()
            try:
                outcomes[who] = library.save(manifest(name, description=f"by {who}"),
                                             {SAMPLE: f"audio {who}".encode() * 1000})
            except Exception as exc:  # noqa: BLE001 - the outcome is what is tested
                outcomes[who] = exc

        threads = [threading.Thread(target=save, args=(who,)) for who in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [who for who, outcome in outcomes.items() if isinstance(outcome, Path)]
        assert len(winners) == 1, outcomes
        loser = 1 - winners[0]
        assert isinstance(outcomes[loser], TTSError) and "already exists" in str(outcomes[loser])
        folder = library.root / name
        assert (folder / SAMPLE).read_bytes() == f"audio {winners[0]}".encode() * 1000
        assert library.get(name).description == f"by {winners[0]}"
    assert entries(library.root) == sorted(f"race{r}" for r in range(30))


def test_a_voice_created_while_saving_wins_and_the_save_is_refused(library, monkeypatch):
    """Another process takes the name between the existence check and the rename."""
    real_atomic_write = voices.atomic_write

    def write_then_competitor(path, write, *args, **kwargs):
        def staged_then_competitor(staging):
            write(staging)
            monkeypatch.setattr(voices, "atomic_write", real_atomic_write)
            library.save(manifest("calm", description="competitor"), {SAMPLE: b"competitor audio"})
        return real_atomic_write(path, staged_then_competitor, *args, **kwargs)

    monkeypatch.setattr(voices, "atomic_write", write_then_competitor)
    with pytest.raises(TTSError, match="'calm' already exists"):
        library.save(manifest("calm", description="late"), {SAMPLE: b"late audio"})
    assert entries(library.root) == ["calm"]
    assert library.get("calm").description == "competitor"
    assert (library.root / "calm" / SAMPLE).read_bytes() == b"competitor audio"


def test_a_saved_voice_is_private_and_on_the_disk_before_it_has_its_name(library, monkeypatch):
    synced: list[int] = []
    real_fsync = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    folder = library.save(manifest("calm"), {SAMPLE: b"audio"})
    assert len(synced) == 2  # the sample and the manifest
    assert folder.stat().st_mode & 0o777 == 0o700
    assert entries(library.root) == ["calm"]


def test_a_saved_voice_s_files_are_private(library):
    folder = library.save(manifest("calm"), {SAMPLE: b"audio"})
    assert library.root.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {SAMPLE: 0o600, MANIFEST: 0o600}


@pytest.mark.parametrize("code, cause", [
    (errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
])
def test_a_save_that_the_disk_refuses_names_the_cause_and_the_voice(library, monkeypatch, code, cause):
    def refused(path, data):
        raise OSError(code, os.strerror(code), str(path))

    library.root.mkdir()
    monkeypatch.setattr(voices, "_write_private", refused)  # each file of the voice: the disk says no
    with pytest.raises(TTSError) as caught:
        library.save(manifest("calm"), {SAMPLE: b"audio"})
    assert str(caught.value).startswith(f"cannot save the voice 'calm' to {str(library.root / 'calm')!r}: {cause}")
    assert errno.errorcode[code] in str(caught.value)
    assert entries(library.root) == []


def test_a_library_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    library = VoiceLibrary(tmp_path / "file" / "voices")
    with pytest.raises(TTSError, match=r"cannot save the voice 'calm' to .*: a part of the path is a file, not a"):
        library.save(manifest("calm"), {SAMPLE: b"audio"})


# --- recordings to clone from --------------------------------------------------------------------


def speech_like(seconds: float, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_a_recording_s_length_is_judged_from_its_header_before_decoding(tmp_path, monkeypatch):
    long = tmp_path / "long.wav"
    sf.write(long, speech_like(40.0), 24000)
    decoded: list[int] = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, *a, **k: (decoded.append(frames),
                                                                                real_read(self, frames, *a, **k))[1])
    with pytest.raises(TTSError, match=r"is 40\.0 s long; a reference voice takes 2-30 s"):
        voices.check_recording(long)
    assert decoded == []  # not a sample of it was decoded
    fine = tmp_path / "fine.wav"
    sf.write(fine, speech_like(4.0), 24000)
    samples, rate = voices.check_recording(fine)
    assert rate == 24000 and len(samples) == 4 * 24000 and decoded == [4 * 24000]


def test_a_header_that_understates_the_length_decodes_no_more_than_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "liar.wav"
    sf.write(path, speech_like(4.0), 24000)
    monkeypatch.setattr(sf.SoundFile, "frames", property(lambda self: 24000 * 29))  # the header says 29 s
    real_read = sf.SoundFile.read
    asked: list[int] = []
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, *a, **k: (asked.append(frames),
                                                                                real_read(self, frames, *a, **k))[1])
    voices.check_recording(path)
    assert asked == [24000 * 29]  # bounded by the header's count, itself bounded by the 30 s limit


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no audio file at"),
    (lambda p: p.mkdir(), "no audio file at"),
    (lambda p: os.mkfifo(p), "no audio file at"),  # never blocks on a pipe with no writer
    (lambda p: p.write_text("not audio"), "is not audio that can be read"),
])
def test_unfit_recordings_are_clear_errors(tmp_path, make, message):
    path = tmp_path / "rec.wav"
    make(path)
    with pytest.raises(TTSError, match=message):
        voices.check_recording(path)


def test_an_unreadable_recording_names_the_cause_and_the_path(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode: permission denied cannot happen to this user")
    path = tmp_path / "secret.wav"
    sf.write(path, speech_like(4.0), 24000)
    path.chmod(0)
    with pytest.raises(TTSError, match=rf"cannot read {str(path)!r}: permission denied.*\[EACCES\]"):
        voices.check_recording(path)


def test_add_recording_saves_a_private_reference(tmp_path):
    sf.write(tmp_path / "me.wav", speech_like(4.0), 24000)
    saved = voices.add_recording(tmp_path / "voices", "me", tmp_path / "me.wav", "Hello there.")
    reference = tmp_path / "voices" / "me" / saved.reference_audio
    assert sf.info(reference).duration == pytest.approx(4.0) and reference.stat().st_mode & 0o777 == 0o600
