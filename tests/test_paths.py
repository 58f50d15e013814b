"""Where requests may read and write (paths.py), what an OSError on a path says, exclusive creation, and the
data dir's housekeeping (datadir.py): pure functions against real folders, then a few calls through the real
MCP client, where only it can show the roots capability at work."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import INTERNAL_ERROR, ErrorData, ListRootsResult, Root

from mcp_tts import datadir, paths
from mcp_tts.config import Settings
from mcp_tts.engines.contract.atomic import (
    Reservation,
    open_folder,
    private_dir,
    staging_name,
    sweep_reservations,
    sweep_staging,
)
from mcp_tts.errors import TTSError
from tests.support.homes import host_pids_of, server_env, stop_hosts
from tests.support.mcp_client import MCP_TTS, error_text
from tests.support.raw_stdio import RawServer


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", runtime_dir=tmp_path / "run")


def refusal(raw, folders, doing="cannot write audio to") -> str:
    with pytest.raises(TTSError) as caught:
        paths.confine(raw, folders, doing)
    return str(caught.value)


# --- the folders of a request ----------------------------------------------------------------------


def test_a_client_s_roots_and_the_data_dir_are_allowed(settings, tmp_path):
    project = tmp_path / "my project"
    project.mkdir()
    folders = paths.for_client(settings, [project.as_uri(), "https://example.com/x", "file://otherhost/y"])
    assert folders.allowed == ((project, "the client's MCP roots"), (settings.data_dir, "the data dir"))
    assert folders.base == project  # a relative path starts in the first root
    assert paths.confine("out.wav", folders, "x") == project / "out.wav"
    assert paths.confine(project / "sub" / "a.wav", folders, "x") == project / "sub" / "a.wav"
    assert paths.confine(settings.data_dir / "voices" / "a.wav", folders, "x")


def test_without_roots_the_working_directory_stands_in(settings, tmp_path):
    folders = paths.for_client(settings, None, cwd=tmp_path)
    assert folders.allowed[0] == (tmp_path, "the server's working directory; the client declares no MCP roots")
    assert folders.base == tmp_path
    # a working directory of / or the home folder says nothing about a project: only the data dir then
    for broad in (Path("/"), Path.home()):
        assert paths.for_client(settings, None, cwd=broad).allowed == ((settings.data_dir, "the data dir"),)
    # a client that declares roots and lists none gets none, not the working directory
    assert paths.for_client(settings, [], cwd=tmp_path).allowed == ((settings.data_dir, "the data dir"),)


def test_allowed_dirs_widen_the_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("MCP_TTS_ALLOWED_DIRS", f"{tmp_path / 'a'}{os.pathsep}{os.pathsep}{tmp_path / 'b'}")
    settings = Settings(data_dir=tmp_path / "data")
    folders = paths.for_client(settings, [])
    assert [origin for _, origin in folders.allowed] == ["the data dir", "MCP_TTS_ALLOWED_DIRS",
                                                         "MCP_TTS_ALLOWED_DIRS"]
    assert paths.confine(tmp_path / "b" / "x.wav", folders, "x") == tmp_path / "b" / "x.wav"


def test_escapes_by_dotdot_and_symlinks_are_refused_with_the_folders_and_how_to_widen_them(settings, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link.wav").symlink_to(outside / "x.wav")  # a dangling symlink, pointing out
    folders = paths.for_client(settings, [root.as_uri()])
    for raw in (root / ".." / "outside" / "x.wav", root / "link" / "x.wav", root / "file-link.wav", "../x.wav",
                "/etc/x.wav", "~/x.wav", root / "link"):
        message = refusal(str(raw), folders)
        assert message.startswith(f"cannot write audio to {str(raw)!r}"), message
        assert "it is outside the folders this server may use" in message
        assert f"{str(root)!r} (the client's MCP roots), {str(settings.data_dir)!r} (the data dir)" in message
        assert "MCP_TTS_ALLOWED_DIRS" in message and os.pathsep in message
    assert "(which is " in refusal(str(root / "link" / "x.wav"), folders)  # the real place is named too
    # a prefix is not a parent: /a/root-other is not inside /a/root
    (tmp_path / "root-other").mkdir()
    assert "outside" in refusal(str(tmp_path / "root-other" / "x.wav"), folders)


def test_the_command_line_is_not_confined(tmp_path):
    assert paths.confine(tmp_path / "x.wav", paths.ANYWHERE, "x") == tmp_path / "x.wav"
    assert paths.ANYWHERE.describe() == "anywhere"


def test_a_client_whose_roots_could_not_be_listed_is_told_so(settings):
    folders = paths.for_client(settings, [], note="the client declares MCP roots but did not list them: timeout")
    assert "(the client declares MCP roots but did not list them: timeout)" in refusal("/etc/x.wav", folders)


# --- what an OSError says --------------------------------------------------------------------------


@pytest.mark.parametrize("code, cause", [
    (errno.ENAMETOOLONG, "the name is too long (a file or folder name holds at most 255 bytes"),
    (errno.EACCES, "permission denied"),
    (errno.EPERM, "permission denied"),
    (errno.ENOSPC, "the disk is full"),
    (errno.EDQUOT, "disk quota exceeded"),
    (errno.EROFS, "the file system is read-only"),
    (errno.EEXIST, "the file exists and is not replaced"),
    (errno.ENOTDIR, "a part of the path is a file, not a folder"),
    (errno.EISDIR, "it is a folder"),
    (errno.ELOOP, "too many levels of symbolic links"),
    (errno.EIO, "an input/output error"),
    (errno.EXDEV, os.strerror(errno.EXDEV)),  # any other: the system's own words
])
def test_each_os_error_names_its_cause_the_path_and_the_errno(tmp_path, code, cause):
    path = tmp_path / "x.wav"
    message = str(paths.os_error(OSError(code, os.strerror(code), str(path)), path, "cannot write audio to"))
    assert message.startswith(f"cannot write audio to {str(path)!r}: {cause}"), message
    assert message.endswith(f"[{errno.errorcode[code]}]")


def test_enoent_says_which_folder_is_missing_or_not_writable(tmp_path):
    def said(path):
        return str(paths.os_error(OSError(errno.ENOENT, "No such file or directory"), path, "cannot write audio to"))
    assert "the folder '/nonexistent-dir' does not exist" in said("/nonexistent-dir/x.wav")
    assert "the folder '/proc' is not writable" in said("/proc/x.wav")  # /proc exists, yet takes no new files
    assert "no such file or folder" in str(paths.os_error(OSError(errno.ENOENT, "x"), tmp_path / "a", "cannot read"))


def test_a_staging_name_is_never_shown(tmp_path):
    path = tmp_path / "x.wav"
    exc = OSError(errno.ENOSPC, "No space left on device", str(staging_name(path)))
    assert ".tmp" not in str(paths.os_error(exc, path, "cannot write audio to"))


def test_real_errors_of_real_paths(tmp_path):
    (tmp_path / "file").write_text("")
    for raw, cause in [(tmp_path / ("x" * 256 + ".wav"), "the name is too long"),
                       (tmp_path / "file" / "x.wav", "a part of the path is a file")]:
        with pytest.raises(OSError) as caught:
            Reservation(raw)
        assert cause in str(paths.os_error(caught.value, raw, "cannot write audio to"))


def test_permission_denied_in_a_folder_of_another_mode(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a folder whatever its mode: permission denied cannot happen to this user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OSError) as caught:
        Reservation(locked / "x.wav")
    assert "permission denied" in str(paths.os_error(caught.value, locked / "x.wav", "cannot write audio to"))


# --- exclusive creation ----------------------------------------------------------------------------


def test_a_reservation_holds_the_name_until_filled_or_released(tmp_path):
    path = tmp_path / "x.wav"
    held = Reservation(path)
    with pytest.raises(FileExistsError):
        Reservation(path)  # the second of two
    held.fill(b"audio")
    assert path.read_bytes() == b"audio" and os.listdir(tmp_path) == ["x.wav"]
    held.release()  # after the fill: nothing to give back
    assert path.read_bytes() == b"audio"
    given_back = Reservation(tmp_path / "y.wav")
    given_back.release()
    assert os.listdir(tmp_path) == ["x.wav"]


def test_a_reservation_never_replaces_nor_removes_what_another_put_there(tmp_path):
    path = tmp_path / "x.wav"
    held = Reservation(path)
    path.unlink()
    path.write_bytes(b"theirs")  # another program took the name meanwhile
    with pytest.raises(FileExistsError):
        held.fill(b"ours")
    held.release()
    assert path.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["x.wav"]
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(FileExistsError):
        Reservation(tmp_path / "dangling")  # a symlink is never followed into a new file
    assert not (tmp_path / "nowhere.wav").exists()


def test_a_private_reservation_is_0600(tmp_path):
    held = Reservation(tmp_path / "x.wav", private=True)
    held.fill(b"audio")
    assert (tmp_path / "x.wav").stat().st_mode & 0o777 == 0o600


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_followed(tmp_path):
    """The reservation opened the checked folder itself: moving it away and planting a symlink to somewhere
    else in its place before the audio is written changes where nothing goes."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    held = Reservation(allowed / "sub" / "x.wav")
    (allowed / "sub").rename(allowed / "moved")
    (allowed / "sub").symlink_to(outside)
    held.fill(b"audio")
    assert os.listdir(outside) == [] and (allowed / "moved" / "x.wav").read_bytes() == b"audio"
    with pytest.raises(OSError) as caught:  # and a new reservation through the symlink is refused
        Reservation(allowed / "sub" / "y.wav")
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert os.listdir(outside) == []


def test_open_folder_refuses_a_symlink_anywhere_on_the_way(tmp_path):
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    os.close(open_folder(tmp_path / "real" / "deep"))
    for path in (tmp_path / "link" / "deep", tmp_path / "link"):
        with pytest.raises(OSError) as caught:
            open_folder(path)
        assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)


HOLDER = """
import sys, time
from pathlib import Path
from mcp_tts.engines.contract.atomic import Reservation
held = [Reservation(Path(p), journal=Path(sys.argv[1])) for p in sys.argv[2:]]
print("held", flush=True)
time.sleep(60)
"""


def test_a_killed_writers_placeholders_are_removed_and_nothing_else(tmp_path):
    """A process killed between reserving and writing leaves empty placeholders: the sweep at the next start
    removes those still empty and its own; a name the user has written meanwhile, and a live writer's, stay."""
    journal, folder = tmp_path / "pending", tmp_path / "project"
    folder.mkdir()
    names = [folder / "left.wav", folder / "rewritten.wav", folder / "replaced.wav"]
    killed = subprocess.Popen([sys.executable, "-c", HOLDER, str(journal), *map(str, names)],
                              stdout=subprocess.PIPE, text=True)
    alive = subprocess.Popen([sys.executable, "-c", HOLDER, str(journal), str(folder / "live.wav")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline().strip() == "held" and alive.stdout.readline().strip() == "held"
        assert len(os.listdir(journal)) == 4
        assert sweep_reservations(journal) == []  # both writers live: nothing is theirs to remove
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        (folder / "rewritten.wav").write_bytes(b"the user's")
        (folder / "replaced.wav").unlink()
        (folder / "replaced.wav").write_bytes(b"")  # empty, yet another file: not the placeholder
        (folder / ".left.wav.0123abcd.tmp").write_bytes(b"x")  # not in the journal: never touched
        assert sweep_reservations(journal) == [str(folder / "left.wav")]
        assert sorted(os.listdir(folder)) == [".left.wav.0123abcd.tmp", "live.wav", "replaced.wav", "rewritten.wav"]
        assert (folder / "rewritten.wav").read_bytes() == b"the user's"
        assert len(os.listdir(journal)) == 1  # the live writer's entry
    finally:
        for proc in (killed, alive):
            proc.kill()
            proc.wait(10)


def test_a_reservation_ended_either_way_leaves_no_journal_entry(tmp_path):
    journal = tmp_path / "pending"
    filled = Reservation(tmp_path / "a.wav", journal=journal)
    given_back = Reservation(tmp_path / "b.wav", journal=journal)
    assert len(os.listdir(journal)) == 2 and journal.stat().st_mode & 0o777 == 0o700
    filled.fill(b"audio")
    given_back.release()
    assert os.listdir(journal) == [] and sorted(os.listdir(tmp_path)) == ["a.wav", "pending"]


# --- the data dir's housekeeping -------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["by_descriptor", "by_path"])
def folder_access(request, monkeypatch):
    """Both ways to a folder's entries: a descriptor opened with O_NOFOLLOW, or paths (where the system has no
    dir_fd, as on Windows)."""
    from mcp_tts.engines.contract import atomic

    if request.param and not atomic._BY_DESCRIPTOR:
        pytest.skip("this system has no dir_fd")
    monkeypatch.setattr(atomic, "_BY_DESCRIPTOR", request.param)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_tidy_removes_only_old_leftovers_of_our_own_and_makes_the_folders_private(settings, tmp_path, folder_access):
    for folder in datadir.data_folders(settings):
        folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        folder.chmod(0o755)
    voices, phrases = settings.voices_dir, settings.data_dir / "cache" / "phrases"
    old_folder = voices / ".calm.0123abcd.tmp"  # a voice save killed mid-way
    old_folder.mkdir()
    (old_folder / "sample.wav").write_bytes(b"x" * 1000)
    old_file = phrases / ".abc.wav.89abcdef.tmp"
    old_file.write_bytes(b"x")
    deleted = voices / ".deleted.calm.k2j_x9qz"
    deleted.mkdir()
    fresh = settings.recordings_dir / ".20261202-101010-0123456789ab.wav.01234567.tmp"  # a live writer's
    fresh.write_bytes(b"x")
    keep = [voices / "calm", voices / ".calm.tmp", phrases / "abc.wav", voices / ".git", phrases / ".x.0123abcd.tmpx"]
    for path in keep:
        path.write_bytes(b"mine") if path.suffix else path.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("not ours")
    planted = voices / ".trap.01234567.tmp"  # a symlink named like a leftover: removed as a link, never followed
    planted.symlink_to(outside)
    for path in (old_folder, old_file, deleted, planted, *keep):
        age(path, 3600)
    removed = datadir.tidy(settings)
    assert sorted(removed) == sorted(str(p) for p in (old_folder, old_file, deleted, planted))
    assert fresh.exists() and all(os.path.lexists(p) for p in keep)
    assert (outside / "precious").read_text() == "not ours"
    for folder in datadir.data_folders(settings):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_tidy_leaves_a_symlinked_folder_alone(settings, tmp_path, folder_access):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    leftover = elsewhere / ".x.0123abcd.tmp"
    leftover.write_bytes(b"x")
    age(leftover, 3600)
    settings.data_dir.mkdir()
    settings.voices_dir.symlink_to(elsewhere)
    assert sweep_staging(settings.voices_dir, 60) == []
    assert leftover.exists()


def test_tidy_runs_when_a_server_s_speech_starts(settings):
    import anyio

    from mcp_tts.speech import Speech

    settings.voices_dir.mkdir(parents=True)
    leftover = settings.voices_dir / ".calm.0123abcd.tmp"
    leftover.mkdir()
    age(leftover, 3600)

    async def start_with(settings: Settings) -> None:
        async with anyio.create_task_group() as tg:
            Speech(settings, None, tg)  # type: ignore[arg-type]  # no host is asked

    async def start() -> None:
        await start_with(settings)

    anyio.run(start)
    assert not leftover.exists()
    assert settings.data_dir.stat().st_mode & 0o777 == settings.voices_dir.stat().st_mode & 0o777 == 0o700
    fresh = Settings(data_dir=settings.data_dir.parent / "new" / "data")
    anyio.run(start_with, fresh)
    assert fresh.data_dir.stat().st_mode & 0o777 == 0o700  # a new one is private before anything is in it


def test_private_dir_makes_missing_parents_private(tmp_path):
    private_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a").stat().st_mode & 0o777 == (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_pruning_deletes_the_oldest_of_our_own_regular_files_only(tmp_path, folder_access):
    folder = tmp_path / "recordings"
    folder.mkdir()
    ours = [f"20260101-0000{i:02d}-0123456789a{i:x}.wav" for i in range(5)]
    for i, name in enumerate(ours):
        (folder / name).write_bytes(b"ours")
        age(folder / name, 100 - i)
    foreign = ["song.wav", "20260101-000000-0123456789ab.WAV", "x20260101-000000-0123456789ab.wav"]
    for name in foreign:
        (folder / name).write_bytes(b"theirs")
        age(folder / name, 1000)
    (folder / "20200101-000000-aaaaaaaaaaaa.wav").symlink_to(tmp_path / "target.wav")
    (tmp_path / "target.wav").write_bytes(b"theirs")
    age(folder / "20200101-000000-aaaaaaaaaaaa.wav", 1000)
    assert datadir.prune_recordings(folder, keep=2) == ours[:3]
    assert sorted(os.listdir(folder)) == sorted([*ours[3:], *foreign, "20200101-000000-aaaaaaaaaaaa.wav"])
    assert (tmp_path / "target.wav").read_bytes() == b"theirs"


# --- through the real MCP client: the roots capability ---------------------------------------------


@asynccontextmanager
async def client(env: dict[str, str], roots: list[Path] | ErrorData | None, cwd: Path):
    """The real MCP client against `mcp-tts serve`, declaring `roots` (None: no roots capability; ErrorData:
    it declares them, then answers roots/list with that error)."""
    async def list_roots(context) -> ListRootsResult | ErrorData:
        if isinstance(roots, ErrorData):
            return roots
        return ListRootsResult(roots=[Root(uri=p.as_uri()) for p in roots or []])

    params = StdioServerParameters(command=MCP_TTS, args=["serve"], env=env, cwd=str(cwd))
    with open(os.devnull, "w") as errlog:
        async with (stdio_client(params, errlog=errlog) as (read, write),
                    ClientSession(read, write, list_roots_callback=list_roots if roots is not None else None)
                    as session):
            await session.initialize()
            yield session


def recording(path: Path) -> Path:
    t = np.arange(24000 * 3) / 24000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 24000)
    return path


@pytest.mark.anyio
async def test_a_client_s_roots_confine_say_and_add_voice(home, tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    recording(project / "me.wav")
    recording(elsewhere / "them.wav")
    env = server_env(home, None, MCP_TTS_OUTPUT="file")
    async with client(env, [project], cwd=elsewhere) as session:  # the working directory is no root
        inside = await session.call_tool("say", {"text": "Hi.", "file_path": "hello.wav"})
        outside = await session.call_tool("say", {"text": "Hi.", "file_path": str(elsewhere / "hello.wav")})
        again = await session.call_tool("say", {"text": "Hi.", "file_path": str(project / "hello.wav")})
        too_long = await session.call_tool("say", {"text": "Hi.", "file_path": str(project / ("x" * 300 + ".wav"))})
        added = await session.call_tool("add_voice", {"name": "me", "audio_path": str(project / "me.wav"),
                                                      "transcript": "Hello there."})
        read_outside = await session.call_tool("add_voice", {"name": "them", "audio_path": str(elsewhere / "them.wav"),
                                                             "transcript": "Hello there."})
    assert not inside.is_error, inside.content
    assert inside.structured_content["file_path"] == str(project / "hello.wav") and sf.info(project / "hello.wav")
    assert f"{str(project)!r} (the client's MCP roots)" in error_text(outside)
    assert "MCP_TTS_ALLOWED_DIRS" in error_text(outside) and not (elsewhere / "hello.wav").exists()
    assert "the file exists and is not replaced" in error_text(again)
    assert "the name is too long" in error_text(too_long) and "ENAMETOOLONG" in error_text(too_long)
    assert not added.is_error, added.content
    assert f"cannot read {str(elsewhere / 'them.wav')!r}: it is outside" in error_text(read_outside)
    voices = home / "data" / "voices"
    assert sorted(os.listdir(voices)) == ["me"] and voices.stat().st_mode & 0o777 == 0o700


@pytest.mark.anyio
async def test_a_client_without_roots_may_use_the_working_directory_and_allowed_dirs(home, tmp_path):
    project, more, elsewhere = tmp_path / "project", tmp_path / "more", tmp_path / "elsewhere"
    for folder in (project, more, elsewhere):
        folder.mkdir()
        recording(folder / "me.wav")
    env = server_env(home, None, MCP_TTS_ALLOWED_DIRS=str(more))
    async with client(env, None, cwd=project) as session:
        results = {str(folder): await session.call_tool("add_voice", {"name": folder.name, "transcript": "Hi.",
                                                                      "audio_path": str(folder / "me.wav")})
                   for folder in (project, more, elsewhere)}
        relative = await session.call_tool("add_voice", {"name": "rel", "audio_path": "me.wav", "transcript": "Hi."})
    assert not results[str(project)].is_error and not results[str(more)].is_error and not relative.is_error
    refused = error_text(results[str(elsewhere)])
    assert "(the server's working directory; the client declares no MCP roots)" in refused
    assert f"{str(more)!r} (MCP_TTS_ALLOWED_DIRS)" in refused


def test_cached_phrases_are_private(tmp_path):
    from mcp_tts.phrase_cache import PhraseCache, PhraseKey

    cache = PhraseCache(tmp_path / "cache" / "phrases", 2**20)
    cache.put(PhraseKey("builtin", "m", "v", "{}", "", "", 1.0, "Done."), np.zeros(100, np.float32), 16000, {})
    assert {p.stat().st_mode & 0o777 for p in cache.folder.iterdir()} == {0o600}
    assert cache.folder.stat().st_mode & 0o777 == (tmp_path / "cache").stat().st_mode & 0o777 == 0o700


@pytest.mark.anyio
async def test_a_client_that_declares_roots_but_cannot_list_them_gets_none(home, tmp_path):
    recording(tmp_path / "me.wav")
    broken = ErrorData(code=INTERNAL_ERROR, message="the roots are on holiday")
    async with client(server_env(home, None), broken, cwd=tmp_path) as session:  # not even the working directory
        refused = await session.call_tool("add_voice", {"name": "me", "audio_path": str(tmp_path / "me.wav"),
                                                        "transcript": "Hi."})
    assert "the client declares MCP roots but did not list them: the roots are on holiday" in error_text(refused)


# --- the command line: not confined, yet exclusive of what it was not told to replace, and as clear --------


@pytest.mark.parametrize("target, message", [
    ("{tmp}/" + "x" * 300 + ".wav", "the name is too long"),
    ("/etc/passwd", "it names an existing file and has no audio suffix; give a new name ending in .wav, .flac, .ogg"),
    ("{tmp}/file/out.wav", "a part of the path is a file, not a folder [ENOTDIR]"),
    ("/proc/out.wav", "the folder '/proc' is not writable"),
])
def test_the_command_line_names_the_cause_and_the_path(monkeypatch, capsys, tmp_path, target, message):
    from mcp_tts import cli

    monkeypatch.setenv("MCP_TTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MCP_TTS_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "file").write_text("")
    target = target.format(tmp=tmp_path)
    assert cli.main(["say", "Hi.", "-o", target]) == 2  # refused before any host is started
    error = capsys.readouterr().err
    assert error.startswith(f"mcp-tts: cannot write audio to {target!r}") and message in error, error
    assert not os.path.exists("/etc/passwd.wav")


def test_a_server_killed_mid_say_leaves_a_placeholder_that_the_next_server_removes(home, tmp_path):
    """kill -9 of `mcp-tts serve` while a say to a file waits on its host: the empty file it reserved is gone
    once the next server starts, and the file a finished say wrote stays."""
    project = tmp_path / "project"
    project.mkdir()
    env = server_env(home, None)

    def say(raw: RawServer, request_id: int, name: str) -> None:
        raw.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
            "name": "say", "arguments": {"text": "Kept or not.", "output": "file", "file_path": name}}}))

    raw = RawServer(env, cwd=project)
    frozen: list[int] = []
    try:
        say(raw, 1, "kept.wav")
        assert raw.read(60)["id"] == 1 and (project / "kept.wav").stat().st_size > 0
        frozen = host_pids_of(home / "run", "builtin")
        for pid in frozen:  # the host holds the say while the server is killed
            os.kill(pid, signal.SIGSTOP)
        say(raw, 2, "lost.wav")
        pending = home / "data" / "pending"
        deadline = time.monotonic() + 10  # reserved and written down (the entry follows the file by microseconds)
        while not ((project / "lost.wav").exists() and pending.is_dir() and os.listdir(pending)) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        raw.proc.kill()
        raw.proc.wait(10)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGKILL)
        stop_hosts(home / "run")
    assert (project / "lost.wav").stat().st_size == 0  # what a killed server leaves
    assert len(os.listdir(home / "data" / "pending")) == 1
    raw = RawServer(env, cwd=project)  # its start tidies the data dir
    try:
        deadline = time.monotonic() + 10
        while (project / "lost.wav").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(os.listdir(project)) == ["kept.wav"]
        assert os.listdir(home / "data" / "pending") == []
    finally:
        raw.close()
        stop_hosts(home / "run")
