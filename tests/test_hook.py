"""`mcp-tts hook`: agent hook events, in the shapes Claude Code and Codex send them, become short lines
for the ear, spoken through the shared speaker alongside every agent's `say`; malformed input never
fails the agent (exit 0, one line on stderr).

The shapes: Claude Code hook input on stdin (session_id, transcript_path, cwd, permission_mode,
hook_event_name, and per event message / stop_hook_active), its transcript JSONL (one entry a line,
assistant entries holding message.content blocks), and Codex's notify payload passed as the last
argument (type agent-turn-complete, thread-id, turn-id, cwd, input-messages, last-assistant-message).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from mcp_tts.hook import HookProblem, line_for, parse_event, prose
from tests.support.homes import server_env
from tests.support.mcp_client import MCP_TTS, mcp_session
from tests.support.pulse import Recorder

LAST_MESSAGE = ("## Summary\n\nI fixed the flaky **retry** test in `tests/test_retry.py`: it waited on the real "
                "clock. It uses a fake one now.\n\n- `tests/test_retry.py`: a fake clock\n- CI runs it 50 times\n\n"
                "```python\nclock.advance(5)\n```\n")
FIRST_SENTENCE = "I fixed the flaky retry test in tests/test_retry.py: it waited on the real clock."


def transcript(folder: Path, last: str = LAST_MESSAGE) -> Path:
    """A Claude Code session transcript: user prompt, a tool call and its result, the final answer."""
    session = "0b1f6a43-5a3e-4d8e-9f0e-2f4c1d1a7b55"
    base = {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/home/dev/api",
            "sessionId": session, "version": "2.0.14", "gitBranch": "main"}
    entries = [
        {**base, "type": "user", "uuid": "u1", "timestamp": "2026-12-02T14:00:00.000Z",
         "message": {"role": "user", "content": "the retry test is flaky, fix it"}},
        {**base, "type": "assistant", "uuid": "a1", "timestamp": "2026-12-02T14:00:03.000Z", "requestId": "req_1",
         "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "text", "text": "Let me look at the test first."}],
                     "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 9}}},
        {**base, "type": "assistant", "uuid": "a2", "timestamp": "2026-12-02T14:00:04.000Z", "requestId": "req_1",
         "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash",
                                  "input": {"command": "pytest tests/test_retry.py"}}],
                     "stop_reason": "tool_use", "usage": {"input_tokens": 12, "output_tokens": 30}}},
        {**base, "type": "user", "uuid": "u2", "timestamp": "2026-12-02T14:00:09.000Z",
         "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                                  "content": "1 passed", "is_error": False}]}},
        {**base, "type": "assistant", "uuid": "a3", "timestamp": "2026-12-02T14:01:00.000Z", "requestId": "req_2",
         "message": {"id": "msg_02", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "text", "text": last}], "stop_reason": "end_turn",
                     "usage": {"input_tokens": 40, "output_tokens": 80}}},
        {**base, "type": "system", "uuid": "s1", "timestamp": "2026-12-02T14:01:01.000Z",
         "subtype": "stop_hook_summary",
         "content": "Stop hooks ran", "level": "info"},
    ]
    path = folder / f"{session}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def claude(event: str, folder: Path, **fields) -> dict:
    """A Claude Code hook input; its transcript written in `folder` unless `transcript_path` is given."""
    path = fields.pop("transcript_path", None) or str(transcript(folder))
    return {"session_id": "0b1f6a43-5a3e-4d8e-9f0e-2f4c1d1a7b55", "transcript_path": path,
            "cwd": "/home/dev/api", "permission_mode": "default", "hook_event_name": event, **fields}


def codex(folder: Path) -> dict:
    return {"type": "agent-turn-complete", "thread-id": "019a7c2e-3f55-7d10-b1c4-5e9d8a6b4f21", "turn-id": "12",
            "cwd": "/home/dev/web", "input-messages": ["make the header sticky"],
            "last-assistant-message": "The header is sticky now. I changed `Header.css` and checked it on mobile."}


EVENTS = {
    "Notification": lambda d: claude("Notification", d, message="Claude needs your permission to use Bash",
                                     notification_type="permission_prompt"),
    "Stop": lambda d: claude("Stop", d, stop_hook_active=False),
    "SubagentStop": lambda d: claude("SubagentStop", d, stop_hook_active=False),
    "agent-turn-complete": codex,
}


# --- the line for each event --------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "summary", "expected"), [
    ("Notification", False, "Claude needs your permission to use Bash"),
    ("Stop", False, "Done in api."),
    ("Stop", True, FIRST_SENTENCE),
    ("SubagentStop", False, "Subagent done in api."),
    ("SubagentStop", True, FIRST_SENTENCE),
    ("agent-turn-complete", False, "Done in web."),
    ("agent-turn-complete", True, "The header is sticky now."),
])
def test_line_for_each_event(event, summary, expected, tmp_path):
    line, problem = line_for(parse_event(json.dumps(EVENTS[event](tmp_path))), summary)
    assert (line, problem) == (expected, None)


def test_subagent_stop_reads_the_subagents_own_transcript(tmp_path):
    own = tmp_path / "agent"
    own.mkdir()
    path = transcript(own, "Found three callers of the old API.")
    event = parse_event(json.dumps(claude("SubagentStop", tmp_path, agent_transcript_path=str(path))))
    assert line_for(event, True) == ("Found three callers of the old API.", None)


def test_a_missing_or_useless_transcript_gives_the_done_line_and_says_why(tmp_path):
    gone = claude("Stop", tmp_path, transcript_path=str(tmp_path / "nope.jsonl"))
    line, problem = line_for(parse_event(json.dumps(gone)), True)
    assert line == "Done in api." and "cannot read the transcript" in problem and "nope.jsonl" in problem
    only_code = claude("Stop", tmp_path, transcript_path=str(transcript(tmp_path, "```\nls\n```")))
    line, problem = line_for(parse_event(json.dumps(only_code)), True)
    assert line == "Done in api." and "no assistant text" in problem
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xff not json\n{\"type\": \"assistant\"}\n[1, 2]\n")
    line, problem = line_for(parse_event(json.dumps(claude("Stop", tmp_path, transcript_path=str(garbage)))), True)
    assert line == "Done in api." and problem


def test_the_answer_is_found_far_back_in_a_long_transcript_but_not_past_its_last_megabyte(tmp_path):
    from mcp_tts.hook import TRANSCRIPT_TAIL, last_assistant_text

    answer = json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": "Early."}]}})
    filler = json.dumps({"type": "user", "message": {"content": [{"type": "tool_result", "content": "x" * 4000}]}})
    path = tmp_path / "long.jsonl"
    within = TRANSCRIPT_TAIL // (len(filler) + 1) - 2
    path.write_text(answer + "\n" + (filler + "\n") * within)
    assert last_assistant_text(str(path)) == "Early."
    path.write_text(answer + "\n" + (filler + "\n") * (within + 10))
    assert last_assistant_text(str(path)) is None


def test_prose_keeps_what_a_person_reads_first():
    assert prose(LAST_MESSAGE).splitlines()[0] == ("I fixed the flaky retry test in tests/test_retry.py: it waited "
                                                   "on the real clock. It uses a fake one now.")
    assert "clock.advance" not in prose(LAST_MESSAGE) and "Summary" not in prose(LAST_MESSAGE)
    assert prose("1. See [the docs](https://x.y/z) first.\n| a | b |") == "See the docs first."


@pytest.mark.parametrize(("text", "named"), [
    ("", "not JSON"),
    ("{\"hook_event_name\": \"Stop\"", "not JSON"),
    ("[1, 2]", "JSON list, not an object"),
    ("{\"session_id\": \"x\"}", "names no event"),
    ("{\"hook_event_name\": \"PreToolUse\", \"tool_name\": \"Bash\"}", "'PreToolUse' is not an event"),
    ("{\"hook_event_name\": \"Notification\", \"message\": \"  \"}", "no message"),
    ("{\"hook_event_name\": 7}", "names no event"),
])
def test_malformed_events_are_named(text, named):
    with pytest.raises(HookProblem, match=re.escape(named)):
        parse_event(text)


# --- the command: never fails the agent ------------------------------------------------------------------


def hook(args: list[str], stdin: str | None, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([MCP_TTS, "hook", *args], input=stdin, env=env, capture_output=True, text=True,
                          timeout=30, cwd=cwd)


@pytest.mark.parametrize(("args", "stdin", "named"), [
    ([], "{not json", "not JSON"),
    ([], "", "not JSON"),
    ([], "\xff\xfe garbage", "not JSON"),
    ([], json.dumps({"hook_event_name": "PostToolUse"}), "not an event the hook speaks"),
    (["--events", "Stop,Lunch"], json.dumps({"hook_event_name": "Stop"}), "--events: Lunch not known"),
    (["--volume", "11"], json.dumps({"hook_event_name": "Stop"}), "unrecognized arguments: --volume"),
    ([], "x" * (2 << 20), "over 1024 KiB"),
])
def test_malformed_input_exits_0_with_one_line_on_stderr(args, stdin, named, home):
    done = hook([*args, "--print"], stdin, env={"MCP_TTS_DATA_DIR": str(home / "data"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcp-tts hook: ") and named in lines[0], done.stderr
    assert not (home / "data" / "hook.log").exists()  # nothing was spoken


def test_no_stdin_at_all_is_a_line_on_stderr(home):
    done = subprocess.run([MCP_TTS, "hook"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr.startswith("mcp-tts hook: the event is not JSON")


def test_events_can_be_limited(tmp_path):
    stop = json.dumps(EVENTS["Stop"](tmp_path))
    assert hook(["--events", "Notification", "--print"], stop).stdout == ""  # not asked for: silence, no complaint
    assert hook(["--events", "Notification,Stop", "--print"], stop).stdout == "Done in api.\n"


def test_codex_passes_the_event_as_its_argument(tmp_path):
    done = hook(["--summary", "--print", json.dumps(codex(tmp_path))], None)
    assert (done.returncode, done.stdout, done.stderr) == (0, "The header is sticky now.\n", "")


def test_a_message_that_looks_like_an_option_is_said_as_it_is(home, tmp_path):
    event = json.dumps({"hook_event_name": "Notification", "message": "--help me, I am stuck"})
    env = server_env(home, None)
    assert hook([], event, env=env).returncode == 0
    [entry] = wait_for_log(home / "data", 1)
    assert entry.text == "--help me, I am stuck" and entry.result["status"] == "saved"


def test_a_failure_after_returning_lands_in_the_hook_log(home, tmp_path):
    """The detached say fails (a backend that does not exist): the agent was long answered; the log says why."""
    env = server_env(home, None)
    done = hook(["--backend", "nonesuch"], json.dumps(EVENTS["Stop"](tmp_path)), env=env)
    assert (done.returncode, done.stderr) == (0, "")
    [entry] = wait_for_log(home / "data", 1)
    assert "nonesuch" in entry.result["error"]


# --- the hook log -----------------------------------------------------------------------------------------


@dataclass
class LogEntry:
    text: str  # the line said
    result: dict  # `mcp-tts say --json`'s result, or {"error": ...}


def read_hook_log(data_dir: Path) -> list[LogEntry]:
    """hook.log's records, one JSON object a line (other lines: what a library printed on stderr)."""
    path = data_dir / "hook.log"
    entries = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and {"text", "result"} <= set(record):
            entries.append(LogEntry(record["text"], record["result"]))
    return entries


def wait_for_log(data_dir: Path, count: int, within: float = 60) -> list[LogEntry]:
    """The first `count` results of detached says, once they are all written."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        entries = read_hook_log(data_dir)
        if len(entries) >= count:
            return entries[:count]
        time.sleep(0.1)
    raise AssertionError(f"hook.log has {len(read_hook_log(data_dir))} results, not {count}")


# --- with three agents speaking ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_hook_events_queue_with_three_agents_speech(home, pulse, tmp_path):
    """Three MCP servers speak while the hook is fed every event (and malformed ones): each hook run
    returns 0 at once, its speech plays through the same speaker, and no two utterances overlap."""
    env = server_env(home, pulse)
    results: dict[str, object] = {}
    runs = []
    async with mcp_session(env) as a, mcp_session(env) as b, mcp_session(env) as c:
        await a.call_tool("say", {"text": "Warm up.", "wait": "end"})
        recorder = Recorder(pulse, tmp_path / "hooks.wav")

        async def speak(name, session) -> None:
            for turn in range(2):
                results[f"{name}{turn}"] = await session.call_tool(
                    "say", {"text": f"Agent {name}, update {turn + 1}.", "wait": "end"})

        def feed() -> None:
            for event in EVENTS:
                payload = json.dumps(EVENTS[event](tmp_path))
                if event == "agent-turn-complete":
                    runs.append(hook(["--summary", payload], None, env=env, cwd=tmp_path))
                else:
                    runs.append(hook(["--summary"], payload, env=env, cwd=tmp_path))
                runs.append(hook([], "{\"hook_event_name\": ", env=env, cwd=tmp_path))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for name, session in (("a", a), ("b", b), ("c", c)):
                    tg.start_soon(speak, name, session)
                await anyio.to_thread.run_sync(feed)
            entries = await anyio.to_thread.run_sync(wait_for_log, home / "data", len(EVENTS))
        heard, rate = recorder.stop()

    assert all(r.returncode == 0 and r.stdout == "" for r in runs)
    good, bad = runs[0::2], runs[1::2]
    assert all(r.stderr == "" for r in good) and all(r.stderr.count("\n") == 1 for r in bad)
    assert sorted(e.text for e in entries) == sorted(["Claude needs your permission to use Bash", FIRST_SENTENCE,
                                                      FIRST_SENTENCE, "The header is sticky now."])
    assert all(e.result["status"] == "played" for e in entries), [e.result for e in entries]
    spans = sorted([(e.result["started_clock"], e.result["ended_clock"]) for e in entries]
                   + [(r.structured_content["started_clock"], r.structured_content["ended_clock"])
                      for r in results.values()])
    assert len(spans) == 10
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start + 0.05, f"utterances overlap: {spans}"
    from tests.test_hosts_and_playback import speech_spans

    total = sum(e.result["audio_seconds"] for e in entries) + sum(
        r.structured_content["audio_seconds"] for r in results.values())
    loud, _ = speech_spans(heard, rate)
    assert 0.5 * total < loud <= total + 0.3
