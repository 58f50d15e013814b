"""Fuzz `mcp-tts serve`: random tool calls through the real MCP client, random raw JSON-RPC lines.

Checks that every request is answered (exactly once, for the raw lines), that no server exits, and
that no file lands outside the run's own folder. Seeded: a seed and counts repeat a run exactly.

    .venv/bin/python -m bench.fuzz --calls 3000 --lines 3000 --seed 1 --json bench/results/fuzz.json

Runs in a process of its own; each server it starts has its data, runtime dir, HOME, TMPDIR and
working directory inside one temporary folder, and every path the calls name is in that folder or
where nothing can be written (a folder that does not exist, /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio
import numpy as np
import soundfile as sf
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.support.homes import server_env, stop_hosts
from tests.support.mcp_client import MCP_TTS
from tests.support.raw_stdio import RawServer

TOOLS = ["say", "list_voices", "design_voice", "add_voice", "switch_backend", "stop"]
CALL_DEADLINE = 60.0  # seconds a request may take before it counts as unanswered

WORDS = ["hello", "build", "done", "tests", "pass", "the", "a", "voice", "error", "file", "café", "naïve"]
ODD = ["", " ", "\t\n", "\x00", "\x07", "\x1b[31m", "\x7f", "\u200b", "\u200d", "\u202e", "\u2028", "\ufeff",
       "\uffff", "\U0010ffff", "🎉", "👩‍👩‍👧", "日本語", "مرحبا", "שלום", "e\u0301", "Ω", "ﬁ", "𝔘𝔫𝔦", "\\", '"', "'",
       "%s", "{0}", "$(rm -rf /)", "; --", "<script>", "../", "~", "*", "?", "\r\n"]
BACKENDS = ["builtin", "qwen-base", "qwen-custom", "qwen-design", "chatterbox", "chatterbox-turbo", "", "tortoise"]


@dataclass
class Tally:
    seed: int
    calls: int = 0  # tool calls through the MCP client
    call_results: int = 0  # answered with a result (isError false)
    call_tool_errors: int = 0  # answered with a tool error (isError true)
    call_protocol_errors: int = 0  # answered with a JSON-RPC error
    call_unanswered: int = 0  # no answer within CALL_DEADLINE
    call_client_errors: dict[str, int] = field(default_factory=dict)  # the client refused before or after the wire
    slowest_call_s: float = 0.0
    lines: int = 0  # raw JSON-RPC lines
    line_requests: int = 0
    line_answered_once: int = 0
    line_unanswered: int = 0
    line_answered_twice: int = 0
    line_null_id_answers: int = 0  # lines no id could be read from
    line_answers_to_notifications: int = 0  # answers no request asked for
    server_exits: int = 0
    files_outside: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- what is sent ------------------------------------------------------------------------------------


def text(rng: random.Random) -> str:
    size = rng.choices([0, 1, 5, 20, 200, 2000, 5001, 20000], [2, 4, 20, 30, 20, 3, 1, 1])[0]
    parts: list[str] = []
    while sum(map(len, parts)) < size:
        parts.append(rng.choice(ODD) if rng.random() < 0.25 else rng.choice(WORDS))
        parts.append(" ")
    return "".join(parts)[:size] if size else rng.choice(["", " ", rng.choice(ODD)])


def value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["int", "float", "bool", "null", "str", "str", "list", "dict"] if depth < 12
                      else ["int", "str", "null"])
    if kind == "int":
        return rng.choice([0, 1, -1, 2, 7, 2**31, 2**63, 2**70, -2**63, rng.randint(-10**6, 10**6)])
    if kind == "float":
        return rng.choice([0.0, -0.0, 0.5, 0.49, 2.01, 1e308, -1e-308, 5e-324, rng.uniform(-5, 5)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "str":
        return text(rng)
    if kind == "list":
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {text(rng)[:20]: value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


OUTSIDE_PREFIX = "mcp-tts-fuzz-outside-"


def file_path(rng: random.Random, root: Path) -> str:
    """A place to write: in the folder the server may write (out/, named by MCP_TTS_ALLOWED_DIRS; cwd/,
    relative), or outside it: writable places it must refuse (~, which is home/; /tmp), and where nothing
    can be."""
    name = rng.choice(["a", "x y", "日本", "🎉", "n" * 300, ".hidden", "a.b", "-rf", "\u202ewav.exe"])
    suffix = rng.choice([".wav", ".flac", ".ogg", ".mp3", "", ".WAV", ".wav.wav", "."])
    return rng.choice([f"{root}/out/{name}{suffix}", f"{name}{suffix}", f"../out/{name}{suffix}",
                       f"~/{name}{suffix}", f"{root}/out", f"{root}/out/", f"{root}/nowhere/{name}.wav",
                       f"/nonexistent-{root.name}/x.wav", "/proc/x.wav", f"{root}/out/../out/{name}.wav",
                       f"{root}/rec.wav", f"{root}/home/{name}{suffix}", f"/tmp/{OUTSIDE_PREFIX}{root.name}{suffix}",
                       f"{root}/out/../home/{name}.wav", ""])


def arguments(rng: random.Random, tool: str, root: Path) -> dict:
    """Plausible arguments for `tool`, then bent: values swapped for any JSON, keys added or dropped."""
    if tool == "say":
        args = {"text": text(rng)}
        if rng.random() < 0.7:
            args["output"] = rng.choice(["audio", "file", "auto", "play", "speakers", None])
        if args.get("output") == "file" or rng.random() < 0.1:
            args["file_path"] = file_path(rng, root)
        for key, choices in (("wait", ["start", "end", "none", "forever"]), ("speed", [0.5, 1, 2, 0.4, 9]),
                             ("voice", ["en-us", "en-gb+f3", "../x", "", "v1"]), ("backend", BACKENDS),
                             ("language", ["en", "de", "auto", "xx"]), ("raw", [True, False]),
                             ("instruct", ["cheerful", ""]), ("temperature", [0.8, 0.0, 6])):
            if rng.random() < 0.2:
                args[key] = rng.choice(choices)
    elif tool == "design_voice":
        args = {"description": text(rng), "name": rng.choice(["v1", "v2", "a.b", "../x", "", "x" * 70, text(rng)])}
        if rng.random() < 0.3:
            args["sample_text"] = text(rng)
        if rng.random() < 0.3:
            args["backend"] = rng.choice(BACKENDS)
    elif tool == "add_voice":
        args = {"name": rng.choice(["r1", "r2", "", "../r"]), "transcript": text(rng),
                "audio_path": rng.choice([f"{root}/rec.wav", f"{root}/missing.wav", f"{root}/out", "/dev/null",
                                          "/etc/hostname", "", f"{root}/rec.wav\x00x"])}
    elif tool == "list_voices":
        args = {"backend": rng.choice(BACKENDS)} if rng.random() < 0.5 else {}
    elif tool == "switch_backend":
        args = {"backend": rng.choice(BACKENDS)}
        if rng.random() < 0.3:
            args["model"] = rng.choice(["espeak-ng", "/nonexistent", text(rng)])
    else:
        args = {}
    for key in list(args):
        if rng.random() < 0.12:
            args[key] = value(rng)
        elif rng.random() < 0.05:
            del args[key]
    if rng.random() < 0.15:
        args[text(rng)[:30] or "extra"] = value(rng)
    return args


def tool_call(rng: random.Random, root: Path) -> tuple[str, dict]:
    weights = [50, 12, 10, 6, 6, 6]
    name = rng.choices(TOOLS, weights)[0] if rng.random() < 0.9 else rng.choice(["", "sayy", "SAY", text(rng)])
    return name, arguments(rng, name if name in TOOLS else "say", root)


def raw_line(rng: random.Random, request_id: int | None, root: Path) -> str:
    """One line: a request (with `request_id`) or a notification, its envelope intact and its params
    bent at the level of text: cut short, spliced with junk, NaN, lone surrogates, deep nesting."""
    method = rng.choice(["tools/call"] * 4 + ["tools/list", "ping", "resources/list", "prompts/list", "initialize",
                                              "logging/setLevel", "completion/complete", "nope", "", "notifications/"
                                              "cancelled", "notifications/initialized", "notifications/progress"])
    head = ('{"jsonrpc":"2.0",' + (f'"id":{request_id},' if request_id is not None else "")
            + f'"method":{json.dumps(method)}')
    if method == "tools/call":
        name, args = tool_call(rng, root)
        params = {"name": name, "arguments": args}
    elif method == "notifications/cancelled":
        params = {"requestId": value(rng)}
    else:
        params = value(rng) if rng.random() < 0.5 else {}
    body = json.dumps(params, ensure_ascii=rng.random() < 0.5)
    bend = rng.choice(["none", "none", "cut", "splice", "nan", "surrogate", "deep", "shape", "drop"])
    if bend == "cut":
        body = body[:rng.randint(0, len(body))]
    elif bend == "splice":
        at = rng.randint(0, len(body))
        junk = ["\x00", "}", "]", ",", '"', "\\", "NaN", "\\u12", "\ud800", "\xff"]  # \ud800: bytes not UTF-8
        body = body[:at] + rng.choice(junk) + body[at:]
    elif bend == "nan":
        body = '{"x":' + rng.choice(["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "01", "1.", ".5"]) + "}"
    elif bend == "surrogate":
        body = '{"name":"say","arguments":{"text":"a' + rng.choice(["\\ud800", "\\udfff", "\\ud800\\ud800",
                                                                      "\\udc00\\ud800"]) + '"}}'
    elif bend == "deep":
        n = rng.choice([65, 200, 1000, 50000])
        body = '{"name":"say","arguments":{"text":' + "[" * n + "]" * n + "}}"
    elif bend == "shape":
        body = rng.choice(["[1,2]", "5", '"x"', "null", "true", "[]", "{}"])
    if bend == "drop":
        return head + "}"
    return head + ',"params":' + body + "}"


# --- the run ------------------------------------------------------------------------------------------


def make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="fz", dir="/tmp"))  # short: Unix socket paths are limited
    for name in ("run", "data", "out", "cwd", "home", "tmp"):
        (root / name).mkdir(mode=0o700)
    t = np.arange(16000 * 3) / 16000
    sf.write(root / "rec.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    return root


def env_of(root: Path) -> dict[str, str]:
    return server_env(root, None, HOME=str(root / "home"), TMPDIR=str(root / "tmp"), MCP_TTS_IDLE_TIMEOUT="30",
                      MCP_TTS_ALLOWED_DIRS=str(root / "out"))


@asynccontextmanager
async def client(root: Path):
    params = StdioServerParameters(command=MCP_TTS, args=["serve"], env=env_of(root), cwd=str(root / "cwd"))
    with open(root / "server.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def fuzz_calls(root: Path, count: int, seed: int, tally: Tally, lanes: int = 4) -> None:
    """`count` random tool calls through the real MCP client, `lanes` at a time."""
    rng = random.Random(seed)
    calls = [tool_call(rng, root) for _ in range(count)]
    async with client(root) as session:
        async def lane(mine: list[tuple[str, dict]]) -> None:
            for name, args in mine:
                tally.calls += 1
                started = time.perf_counter()
                try:
                    with anyio.fail_after(CALL_DEADLINE):
                        result = await session.call_tool(name, args)
                except TimeoutError:
                    tally.call_unanswered += 1
                    print(f"  unanswered: {name}({_short(args)})", file=sys.stderr)
                    continue
                except Exception as exc:  # noqa: BLE001 - each kind is counted
                    kind = type(exc).__name__
                    if kind == "MCPError":
                        tally.call_protocol_errors += 1
                    else:
                        tally.call_client_errors[kind] = tally.call_client_errors.get(kind, 0) + 1
                    continue
                finally:
                    tally.slowest_call_s = max(tally.slowest_call_s, time.perf_counter() - started)
                if result.is_error:
                    tally.call_tool_errors += 1
                else:
                    tally.call_results += 1

        async with anyio.create_task_group() as tg:
            for i in range(lanes):
                tg.start_soon(lane, calls[i::lanes])
        with anyio.fail_after(CALL_DEADLINE):  # still serving after all that
            final = await session.call_tool("say", {"text": "Still here.", "output": "audio"})
        if final.is_error:
            tally.server_exits += 1


def fuzz_lines(root: Path, count: int, seed: int, tally: Tally) -> None:
    """`count` raw lines, one at a time: a request is answered exactly once, a notification never."""
    rng = random.Random(seed + 1)
    server = RawServer(env_of(root), cwd=root / "cwd")
    try:
        for n in range(count):
            is_request = rng.random() < 0.8
            request_id = 10_000 + n if is_request else None
            line = raw_line(rng, request_id, root)
            tally.lines += 1
            server.send(line.encode("utf-8", "surrogatepass"))
            ping = f"ping-{n}"
            if not is_request:
                server.send(json.dumps({"jsonrpc": "2.0", "id": ping, "method": "ping"}))
            tally.line_requests += is_request
            answers = _answers_until(server, request_id if is_request else ping, tally)
            if answers is None:
                tally.line_unanswered += 1
                print(f"  unanswered line: {line[:120]!r}", file=sys.stderr)
                if server.proc.poll() is not None:
                    tally.server_exits += 1
                    server = RawServer(env_of(root), cwd=root / "cwd")
                continue
            if is_request:
                tally.line_answered_once += 1
        server.ping("last")
    finally:
        server.close()
        if server.proc.returncode not in (0, None):
            tally.server_exits += 1


def _answers_until(server: RawServer, wanted, tally: Tally) -> list[dict] | None:
    """Reads answers until the one for `wanted`; counts those for earlier ids (twice) or none (null)."""
    end = time.monotonic() + CALL_DEADLINE
    seen = []
    while time.monotonic() < end:
        try:
            message = server.read(end - time.monotonic())
        except AssertionError:  # the server exited
            return None
        if message is None:
            return None
        if "method" in message:  # the server's own notification (progress, a log line)
            continue
        seen.append(message)
        if message.get("id") == wanted:
            return seen
        if message.get("id") is None:
            tally.line_null_id_answers += 1
        elif isinstance(message.get("id"), int):
            tally.line_answered_twice += 1
        else:
            tally.line_answers_to_notifications += 1
    return None


def files_outside(root: Path) -> list[str]:
    """Files the run left outside the folders the server may write (out/, cwd/ and the data dir): the
    targets outside them that its calls named, and anything in home/."""
    named = [p for p in (f"/nonexistent-{root.name}", "/proc/x.wav") if os.path.lexists(p)]
    named += [str(p) for p in Path("/tmp").glob(f"{OUTSIDE_PREFIX}{root.name}*")]
    return named + [str(p) for p in (root / "home").rglob("*")]


def run(calls: int, lines: int, seed: int, lanes: int = 4) -> Tally:
    tally = Tally(seed=seed)
    root = make_root()
    started = time.perf_counter()
    try:
        anyio.run(fuzz_calls, root, calls, seed, tally, lanes)
        fuzz_lines(root, lines, seed, tally)
        tally.files_outside = files_outside(root)
    finally:
        tally.seconds = round(time.perf_counter() - started, 1)
        stop_hosts(root / "run")
        shutil.rmtree(root, ignore_errors=True)
        for stray in Path("/tmp").glob(f"{OUTSIDE_PREFIX}{root.name}*"):  # counted above; not left behind
            stray.unlink()
    return tally


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) < 100 else text[:97] + "..."


def table(tallies: list[Tally]) -> str:
    rows = [("seed", "calls", "results", "tool err", "rpc err", "client err", "unanswered", "slowest s", "lines",
             "requests", "answered 1x", "answered 2x", "unanswered", "null id", "server exits", "files outside", "s")]
    for t in tallies:
        rows.append((t.seed, t.calls, t.call_results, t.call_tool_errors, t.call_protocol_errors,
                     sum(t.call_client_errors.values()), t.call_unanswered, f"{t.slowest_call_s:.1f}", t.lines,
                     t.line_requests, t.line_answered_once, t.line_answered_twice, t.line_unanswered,
                     t.line_null_id_answers, t.server_exits, len(t.files_outside), t.seconds))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(" | ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> None:
    global CALL_DEADLINE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="tool calls through the MCP client, per seed")
    parser.add_argument("--lines", type=int, default=1000, help="raw JSON-RPC lines, per seed")
    parser.add_argument("--seed", type=int, nargs="+", default=[1])
    parser.add_argument("--lanes", type=int, default=4, help="tool calls in flight at once")
    parser.add_argument("--deadline", type=float, default=CALL_DEADLINE, help="seconds before a request counts "
                        "as unanswered")
    parser.add_argument("--json", type=Path, help="write the tallies here")
    args = parser.parse_args()
    CALL_DEADLINE = args.deadline
    tallies = [run(args.calls, args.lines, seed, args.lanes) for seed in args.seed]
    print(table(tallies))
    for t in tallies:
        if t.call_client_errors:
            print(f"seed {t.seed}: client-side errors {t.call_client_errors}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(t) for t in tallies], indent=1) + "\n")


if __name__ == "__main__":
    main()
