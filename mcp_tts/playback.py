"""The person's hand on the shared speaker queue: pause, resume, skip and stop, for every agent at once.

Runs in the server and in the CLI. The speaker host does the work (engines/speaker/service.py); this
side sends one Control and turns its answer into a PlaybackResult. A speaker that is not running has
nothing to act on, and starting one just to say so would open the audio device for nothing.
"""

from __future__ import annotations

import uuid
from typing import Literal

from .engines.contract.protocol import Control, Controlled
from .host_client import Hosts
from .models import AffectedUtterance, PlaybackResult
from .replies import ReplyReader

Action = Literal["pause", "resume", "skip", "stop"]


async def control(hosts: Hosts, action: Action) -> PlaybackResult:
    """Sends `action` to the running speaker; says what it touched."""
    speaker = await hosts.existing("speaker")
    if speaker is None:
        return PlaybackResult(action=action, changed=False, paused=False, speaker_running=False,
                              summary="nothing is playing: no speaker process runs")
    reader = ReplyReader(await speaker.request(Control(id=uuid.uuid4().hex[:12], action=action)), "speaker")
    try:
        answer = await reader.expect(Controlled)
    finally:
        reader.close()
    affected = [AffectedUtterance(utterance_id=a["id"], client=a["client"], seconds_heard=a["seconds"],
                                  was_playing=a["playing"]) for a in answer.affected]
    return PlaybackResult(action=action, changed=answer.changed, paused=answer.paused, affected=affected,
                          waiting=answer.waiting, speaker_running=True, summary=summarize(answer))


def summarize(answer: Controlled) -> str:
    """One sentence for the person or the agent: what the action did."""
    current = next((a for a in answer.affected if a["playing"]), None)
    behind = sum(1 for a in answer.affected if not a["playing"])
    at = f" at {current['seconds']:.2f} s" if current else ""
    if answer.action == "pause":
        if not answer.changed:
            return "already paused; `resume` continues"
        return (f"paused{at}: {_count(1 if current else 0, 'utterance')} held, {behind} waiting behind it"
                if answer.affected else "paused: nothing is queued; speech that comes now waits for `resume`")
    if answer.action == "resume":
        if not answer.changed:
            return "was not paused"
        return f"resumed{at}: {_count(len(answer.affected), 'utterance')} in the queue go on"
    if answer.action == "skip":
        if current is None:
            return "nothing was playing; nothing skipped"
        return (f"skipped the utterance playing{at}; {answer.waiting} waiting"
                + (" (still paused)" if answer.paused else ""))
    if not answer.affected:
        return "nothing was playing" + ("; the pause is lifted" if answer.changed else "")
    return f"stopped{at}: {_count(len(answer.affected), 'utterance')} ended or dropped"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
