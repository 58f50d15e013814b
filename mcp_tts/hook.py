"""`mcp-tts hook`: a word from the agent when it stops or needs the person, wired into the agent's hooks.

Runs in the process the agent starts for each event, which the agent waits for: it reads the event,
shapes one short line for the ear, hands it to a detached `mcp-tts say` (which queues on the shared
speaker with every agent's speech) and exits, in well under 200 ms. It never fails the agent: on any
problem (malformed input, an event it does not speak, an unreadable transcript) it exits 0 with one
line on stderr. Standard library only, and its lighter modules (no dataclasses, no pathlib: they cost
tens of ms at start on a busy machine), so that it starts fast; the detached child does the speaking.

Events, in the shapes their agents send them:
- Claude Code, JSON on stdin, `hook_event_name` one of:
  Notification  {"message": "Claude needs your permission to use Bash", "title"?, "notification_type"?}
  Stop          {"transcript_path": ".../<session>.jsonl", "stop_hook_active": false, "cwd": ...}
  SubagentStop  as Stop (and "agent_transcript_path" in newer versions)
- Codex `notify`, JSON as the last argument: {"type": "agent-turn-complete", "last-assistant-message": ...,
  "input-messages": [...], "thread-id": ..., "turn-id": ..., "cwd": ...}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

from .engines.runtime.sentences import first_sentence

EVENTS = ("Notification", "Stop", "SubagentStop", "agent-turn-complete")
MAX_EVENT_BYTES = 1 << 20  # a hook event is a few hundred bytes; Codex's carries the last message
STDIN_WAIT = 0.1  # seconds to wait for an event on stdin: the agent writes it before it waits on us
TRANSCRIPT_TAIL = 1 << 20  # bytes read from the end of a transcript: the last message is near the end
SUMMARY_CHARS = 200  # the spoken first sentence, at most: about 12 seconds of speech
LOG_NAME = "hook.log"  # in the data dir: what the detached `say` printed (its result, or its error)
LOG_KEEP = 1 << 20  # bytes; a longer log is moved to hook.log.1 first


class HookProblem(Exception):
    """Something about the event that means nothing is said; reported on stderr, exit status 0."""


class Event(NamedTuple):
    """What the hook needs from an agent's event, whichever agent sent it."""

    name: str  # one of EVENTS
    message: str = ""  # Notification's text
    transcript: str | None = None  # Claude Code's session transcript (JSONL), user folder expanded
    last_message: str | None = None  # Codex gives the last assistant message itself
    project: str = ""  # the working directory's name, to tell agents apart


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-tts hook", description="Speak an agent hook event: Claude Code's Notification, Stop and "
        "SubagentStop (JSON on stdin), Codex's notify (JSON as the last argument). Returns at once; the speech "
        "queues with every agent's. Always exits 0: problems are one line on stderr.")
    parser.add_argument("payload", nargs="?", help="the event as JSON (Codex's notify passes it here); "
                                                   "default: read from stdin")
    parser.add_argument("--events", default=",".join(EVENTS), metavar="NAMES",
                        help=f"comma-separated events to speak; others are ignored (default: {','.join(EVENTS)})")
    parser.add_argument("--summary", action="store_true",
                        help="on Stop, SubagentStop and agent-turn-complete, speak the first sentence of the last "
                             "assistant message instead of the short done line")
    parser.add_argument("--done", default="Done", metavar="TEXT",
                        help="the done line's words (default 'Done'); the project's name follows: 'Done in api.'")
    parser.add_argument("-v", "--voice", help="voice to speak in (see `mcp-tts voices`)")
    parser.add_argument("-b", "--backend", help="backend to speak with (see `mcp-tts voices`)")
    parser.add_argument("-s", "--speed", help="speaking rate; 1.0 is normal")
    parser.add_argument("--print", action="store_true", dest="print_only",
                        help="print the line instead of speaking it (to try a hook by hand)")
    parser.add_argument("--foreground", action="store_true",
                        help="speak in this process and wait for the end, showing `mcp-tts say`'s result and its "
                             "exit status (to debug a hook by hand; never in an agent's settings)")
    return parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise HookProblem(f"bad arguments: {message} (see `mcp-tts hook --help`)")


def main(argv: list[str] | None = None) -> int:
    """Exits 0 whatever happens, but for --help and --foreground's own status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv) if {"-h", "--help"} & set(argv) else _parse(argv)
        wanted = _events_option(args.events)
        event = parse_event(args.payload if args.payload is not None else read_stdin())
        if event.name not in wanted:
            return 0  # limited by --events: not a problem, nothing to say
        line, problem = line_for(event, args.summary, args.done)
        if problem:
            _warn(problem)
        if args.print_only:
            print(line)
            return 0
        say = _say_arguments(line, args)
        if args.foreground:
            from .cli import main as cli

            return cli(say)
        speak_detached(say)
    except HookProblem as exc:
        _warn(str(exc))
    except Exception as exc:  # never fail the agent
        _warn(f"unexpected {type(exc).__name__}: {exc}")
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    parser.__class__ = _Parser  # usage errors become a HookProblem: one line on stderr, exit 0
    return parser.parse_args(argv)


def _warn(message: str) -> None:
    print(f"mcp-tts hook: {message}", file=sys.stderr)


def _events_option(value: str) -> set[str]:
    names = {n.strip() for n in value.split(",") if n.strip()}
    unknown = sorted(names - set(EVENTS))
    if unknown or not names:
        raise HookProblem(f"--events: {', '.join(unknown) or 'none given'} not known; known: {', '.join(EVENTS)}")
    return names


def read_stdin(wait: float = STDIN_WAIT) -> str:
    """The event on stdin: what arrives until it closes, or until `wait` seconds pass without a byte."""
    stream = sys.stdin.buffer if sys.stdin is not None else None
    if stream is None or stream.isatty():
        raise HookProblem("no event: pass the hook event's JSON on stdin (or as the argument, as Codex does)")
    chunks, size = [], 0
    with selectors.DefaultSelector() as selector:
        try:
            selector.register(stream, selectors.EVENT_READ)
        except (PermissionError, ValueError):  # a regular file (or /dev/null): it reads to its end at once
            return stream.read(MAX_EVENT_BYTES + 1).decode("utf-8", errors="replace")
        while True:
            if not selector.select(wait):
                if chunks:
                    break  # an agent that writes the event but keeps stdin open
                raise HookProblem(f"no event on stdin within {wait * 1000:.0f} ms")
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_EVENT_BYTES:
                raise HookProblem(f"the event is over {MAX_EVENT_BYTES // 1024} KiB: not a hook event")
    return b"".join(chunks).decode("utf-8", errors="replace")


def parse_event(text: str) -> Event:
    """An Event from a hook's JSON; HookProblem naming what is wrong and what is accepted."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HookProblem(f"the event is not JSON ({exc}); expected an object like "
                          f'{{"hook_event_name": "Stop", ...}} or {{"type": "agent-turn-complete", ...}}') from None
    if not isinstance(data, dict):
        raise HookProblem(f"the event is a JSON {type(data).__name__}, not an object")
    name = data.get("hook_event_name", data.get("type"))
    if not isinstance(name, str):
        raise HookProblem("the event names no event: expected hook_event_name (Claude Code) or type (Codex)")
    if name not in EVENTS:
        raise HookProblem(f"{name[:60]!r} is not an event the hook speaks; it speaks {', '.join(EVENTS)}")
    cwd = data.get("cwd")
    project = os.path.basename(cwd.rstrip("/")) if isinstance(cwd, str) and cwd.strip() else ""
    if name == "Notification":
        message = next((v for v in (data.get("message"), data.get("title")) if isinstance(v, str) and v.strip()), "")
        if not message:
            raise HookProblem("the Notification has no message to say")
        return Event(name, message=message.strip(), project=project)
    if name == "agent-turn-complete":
        last = data.get("last-assistant-message")
        return Event(name, last_message=last if isinstance(last, str) else None, project=project)
    path = data.get("agent_transcript_path") if name == "SubagentStop" else None
    path = path or data.get("transcript_path")
    transcript = os.path.expanduser(path) if isinstance(path, str) and path else None
    return Event(name, transcript=transcript, project=project)


def line_for(event: Event, summary: bool, done: str = "Done") -> tuple[str, str | None]:
    """The line to say for `event`, and a problem to report (the line is then the plain done line)."""
    if event.name == "Notification":
        return event.message, None
    where = f" in {event.project}" if event.project else ""
    plain = f"Subagent {done[:1].lower()}{done[1:]}{where}." if event.name == "SubagentStop" else f"{done}{where}."
    if not summary:
        return plain, None
    problem = None
    text = event.last_message
    if text is None and event.transcript is not None:
        try:
            text = last_assistant_text(event.transcript)
        except OSError as exc:
            problem = f"cannot read the transcript {event.transcript}: {exc.strerror or exc}; said the done line"
    elif text is None:
        problem = "the event names no transcript and carries no message; said the done line"
    sentence = first_sentence(prose(text), SUMMARY_CHARS) if text else ""
    if not sentence and problem is None:
        problem = "no assistant text in the last message; said the done line"
    return (sentence or plain), problem


def last_assistant_text(path: str) -> str | None:
    """The text of the last assistant entry in a Claude Code transcript (JSONL), read backwards from its
    end in growing blocks (the answer is usually in the last few KB), at most TRANSCRIPT_TAIL bytes."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        block = 1 << 16
        while True:
            start = max(0, end - block)
            f.seek(start)
            lines = f.read(end - start).split(b"\n")
            if start:
                lines = lines[1:]  # the first one is cut
            for raw in reversed(lines):
                text = _assistant_text(raw)
                if text:
                    return text
            if start == 0 or block >= TRANSCRIPT_TAIL:
                return None
            block *= 4


def _assistant_text(raw: bytes) -> str | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("type") != "assistant":
        return None
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n\n".join(t for t in texts if isinstance(t, str) and t.strip()) or None
    return None


_MARK = re.compile(r"^\s*(?:[-*+>]\s+|\d+[.)]\s+)+")  # list bullets, numbers, quotes
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def prose(markdown: str) -> str:
    """The prose of a message, one paragraph a line: no code blocks, headings, tables or markup, so its
    first sentence is what a person would read first."""
    return "\n".join(_paragraphs(markdown))


def _paragraphs(markdown: str) -> Iterator[str]:
    fenced, paragraph = False, []
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or stripped.startswith(("#", "|")) or not stripped:
            if paragraph:
                yield " ".join(paragraph)
            paragraph = []
            continue
        text = _LINK.sub(r"\1", _EMPHASIS.sub("", _MARK.sub("", stripped)))
        if _MARK.match(line) and paragraph:  # a list item is its own paragraph
            yield " ".join(paragraph)
            paragraph = []
        paragraph.append(text)
    if paragraph:
        yield " ".join(paragraph)


def _say_arguments(line: str, args: argparse.Namespace) -> list[str]:
    say = ["say"]
    for flag, value in (("--voice", args.voice), ("--backend", args.backend), ("--speed", args.speed)):
        if value:
            say += [flag, value]
    return [*say, "--", line]  # the line last, after "--": a message that starts with "-" is not an option


def speak_detached(say: list[str]) -> None:
    """Starts `mcp-tts say` in a session of its own, not waited for: it outlives this process, and its
    output goes to the data dir's hook.log, never to the agent's pipes (an agent reads them to the end)."""
    subprocess.Popen([sys.executable, "-m", "mcp_tts.hook", *say], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _detached(say: list[str]) -> int:
    """The detached child: `mcp-tts say --json`, its result appended to hook.log as one JSON line
    ({"time", "text", "result"}), written at once so that children finishing together never interleave;
    anything else it prints on stderr (a library's complaint) lands there as its own lines."""
    import contextlib
    import io

    from .cli import main as cli
    from .config import Settings

    settings = Settings.from_env()
    log = settings.data_dir / LOG_NAME
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if log.stat().st_size > LOG_KEEP:
            os.replace(log, log.with_name(LOG_NAME + ".1"))
    except FileNotFoundError:
        pass
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 2)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli([say[0], "--json", *say[1:]])
    try:
        result = json.loads(printed.getvalue())
    except ValueError:
        result = {"error": printed.getvalue().strip() or f"`mcp-tts say` ended with status {status}"}
    os.write(fd, (json.dumps({"time": started, "text": say[-1], "result": result}) + "\n").encode())
    os.close(fd)
    return status


if __name__ == "__main__":
    sys.exit(_detached(sys.argv[1:]))
