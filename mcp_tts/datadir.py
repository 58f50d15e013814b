"""The data dir's housekeeping: its folders private, recordings kept to a bound, crash leftovers removed.

Runs in the server process and the CLI. Everything here deletes only what this program wrote: names of
its own patterns, regular files (or its own staging folders) of this user, in folders opened without
following a symlink.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from .config import Settings
from .engines.contract.atomic import STAGING, Entries, mine, private_dir, sweep_reservations, sweep_staging

__all__ = ["DELETED_VOICE", "KEPT_RECORDINGS", "RECORDING", "STAGING", "data_folders", "pending_folder",
           "prune_recordings", "recordings_folder", "tidy"]

log = logging.getLogger("mcp_tts.datadir")

KEPT_RECORDINGS = 200
# what Speech names a recording: <date>-<time>-<utterance id>.wav; pruning touches nothing else
RECORDING = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{12}\.wav$")
# what VoiceLibrary.delete leaves for a moment: .deleted.<name>.<mkdtemp's 8 characters>
DELETED_VOICE = re.compile(r"^\.deleted\.[A-Za-z0-9][A-Za-z0-9_.-]*\.[a-z0-9_]{8}$")


def data_folders(settings: Settings) -> list[Path]:
    """The folders of the data dir this program writes in, the data dir first."""
    cache = settings.data_dir / "cache"
    return [settings.data_dir, settings.voices_dir, settings.recordings_dir, cache, cache / "phrases",
            cache / "clone-prompts", pending_folder(settings)]


def pending_folder(settings: Settings) -> Path:
    """Where output files being made are written down (atomic.Reservation's journal): a server killed
    before it wrote one leaves an empty placeholder in the user's folder, removed at the next start."""
    return settings.data_dir / "pending"


def tidy(settings: Settings, older_than: float = 60.0) -> list[str]:
    """At start: the data dir (made if need be) and each of its folders private (0700), and the staging
    files and folders that writers killed mid-way left there (older than `older_than` seconds: a live
    writer's are younger) removed, and the empty output files that a killed server had reserved (the
    `pending` journal). Returns what was removed, as paths; a folder that cannot be tidied is
    logged and left."""
    removed: list[str] = []
    try:  # made now if new: what is written in it later is private from the first write on
        private_dir(settings.data_dir)
    except OSError as exc:
        log.warning("data dir %s not made private: %s", settings.data_dir, exc)
    for folder in data_folders(settings):
        try:
            if not folder.is_dir():
                continue
            private_dir(folder)
        except OSError as exc:
            log.warning("data folder %s not made private: %s", folder, exc)
            continue
        removed += [str(folder / name) for name in sweep_staging(folder, older_than)]
        if folder == settings.voices_dir:
            removed += [str(folder / name) for name in sweep_staging(folder, older_than, DELETED_VOICE)]
    removed += sweep_reservations(pending_folder(settings))
    if removed:
        log.info("removed what interrupted writes left: %s", ", ".join(removed))
    return removed


def recordings_folder(settings: Settings) -> Path:
    """The recordings folder, made private (0700) with the data dir if need be."""
    return private_dir(settings.recordings_dir)


def prune_recordings(folder: Path, keep: int = KEPT_RECORDINGS) -> list[str]:
    """Deletes the oldest recordings beyond `keep` (by modification time, then name): only
    names of RECORDING's pattern that are regular files of this user, in `folder` itself, opened without
    following a symlink; a symlinked folder is not pruned at all. Returns the names deleted."""
    try:
        entries = Entries(folder)
    except OSError as exc:
        log.warning("recordings in %s not pruned: %s", folder,
                    "it is a symbolic link" if os.path.islink(folder) else exc)
        return []
    deleted: list[str] = []
    with entries:
        ours = []
        for name in entries.names():
            if not RECORDING.fullmatch(name):
                continue
            try:
                st = entries.lstat(name)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and mine(st):
                ours.append((st.st_mtime_ns, name))  # a name's time has whole seconds only
        for _, name in sorted(ours)[:max(0, len(ours) - keep)]:
            try:
                entries.remove(name)
                deleted.append(name)
            except OSError as exc:
                log.warning("old recording %s not deleted: %s", folder / name, exc)
    return deleted
