"""The client snippets in agent_configs/ parse, follow each client's schema, and start the server.

Every snippet is read with the parser its client uses (json, tomllib, a shell
split for the Claude Code command), the server entry is pulled out the way that
client reads it, and then the server is started from exactly that command line
with the real MCP stdio client, which must see the five tools.

The parse-only tests have "parse" in their names: `pytest -k parse` runs just those.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import PaginatedRequestParams

CONFIG_DIR = Path(__file__).resolve().parent.parent / "agent_configs"
SERVER_NAME = "tts"
EXPECTED_COMMAND = "mcp-tts"
EXPECTED_ARGS = ["serve"]
EXPECTED_ENV = {"MCP_TTS_BACKEND": "builtin"}
EXPECTED_TOOLS = {"say", "list_voices", "design_voice", "add_voice", "switch_backend", "stop", "pause", "resume",
                  "skip"}
SESSION_TIMEOUT_S = 60


@dataclass
class ServerSpec:
    """What a client would spawn: the command, its arguments and the extra environment."""

    command: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- extractors


def _check_env(entry: dict[str, Any], where: str) -> dict[str, str]:
    env = entry.get("env", {})
    assert isinstance(env, dict), f"{where}: env must be an object/table"
    for key, value in env.items():
        assert isinstance(key, str) and isinstance(value, str), f"{where}: env values must be strings"
    return dict(env)


def _check_command_args(entry: dict[str, Any], where: str) -> tuple[str, list[str]]:
    assert "command" in entry, f"{where}: missing required key 'command'"
    command = entry["command"]
    assert isinstance(command, str) and command, f"{where}: 'command' must be a non-empty string"
    args = entry.get("args", [])
    assert isinstance(args, list) and all(isinstance(a, str) for a in args), \
        f"{where}: 'args' must be a list of strings"
    return command, list(args)


def _json_servers(path: Path, top_key: str, *, require_type_stdio: bool) -> ServerSpec:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path.name}: top level must be an object"
    assert top_key in doc, f"{path.name}: missing top-level key {top_key!r}"
    servers = doc[top_key]
    assert isinstance(servers, dict), f"{path.name}: {top_key!r} must be an object"
    assert SERVER_NAME in servers, f"{path.name}: no server named {SERVER_NAME!r} under {top_key!r}"
    entry = servers[SERVER_NAME]
    assert isinstance(entry, dict)
    where = f"{path.name}: {top_key}.{SERVER_NAME}"
    if require_type_stdio:
        assert entry.get("type") == "stdio", f'{where}: needs "type": "stdio"'
    elif "type" in entry:
        assert entry["type"] == "stdio", f'{where}: "type" must be "stdio" when present'
    command, args = _check_command_args(entry, where)
    return ServerSpec(command, args, _check_env(entry, where))


def parse_claude_code_sh(path: Path) -> ServerSpec:
    """`claude mcp add [options] NAME -- CMD ARGS...` (the one non-comment line)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#!"), f"{path.name}: expected a shebang line"
    # Strip comments (shebang included), join continuation lines.
    lines = text.replace("\\\n", " ").splitlines()
    code = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) == 1, f"{path.name}: expected exactly one command line, got {code!r}"
    spec = _parse_claude_mcp_add(shlex.split(code[0], comments=True), path.name)

    # The commented `--env` variant must describe the same server.
    variants = [line.lstrip("# ").strip() for line in text.splitlines()
                if line.lstrip().startswith("#") and "claude mcp add" in line]
    for variant in variants:
        alt = _parse_claude_mcp_add(shlex.split(variant, comments=True), f"{path.name} (comment)")
        assert (alt.command, alt.args) == (spec.command, spec.args), \
            f"{path.name}: commented variant differs: {variant!r}"
        assert alt.env in ({}, EXPECTED_ENV), f"{path.name}: commented variant env {alt.env!r}"
    return spec


def _parse_claude_mcp_add(tokens: list[str], where: str) -> ServerSpec:
    assert tokens[:3] == ["claude", "mcp", "add"], f"{where}: not a `claude mcp add` command: {tokens!r}"
    assert "--" in tokens, f"{where}: the server command must follow `--`"
    sep = tokens.index("--")
    options, server_cmd = tokens[3:sep], tokens[sep + 1 :]
    assert server_cmd, f"{where}: nothing after `--`"

    transport = scope = None
    env: dict[str, str] = {}
    positionals: list[str] = []
    i = 0
    while i < len(options):
        opt = options[i]
        if opt in ("--transport", "-t", "--scope", "-s", "--env", "-e"):
            assert i + 1 < len(options), f"{where}: {opt} needs a value"
            value = options[i + 1]
            i += 2
        elif opt.startswith(("--transport=", "--scope=", "--env=")):
            opt, value = opt.split("=", 1)
            i += 1
        else:
            assert not opt.startswith("-"), f"{where}: unknown option {opt!r}"
            positionals.append(opt)
            i += 1
            continue
        if opt in ("--transport", "-t"):
            transport = value
        elif opt in ("--scope", "-s"):
            scope = value
        else:
            key, eq, val = value.partition("=")
            assert eq, f"{where}: --env needs KEY=VALUE, got {value!r}"
            env[key] = val
    assert transport == "stdio", f"{where}: needs --transport stdio"
    assert scope in ("local", "project", "user"), f"{where}: bad --scope {scope!r}"
    assert positionals == [SERVER_NAME], f"{where}: expected server name {SERVER_NAME!r}, got {positionals!r}"
    return ServerSpec(server_cmd[0], server_cmd[1:], env)


def parse_codex_toml(path: Path) -> ServerSpec:
    with path.open("rb") as f:
        doc = tomllib.load(f)
    assert "mcp_servers" in doc, f"{path.name}: missing [mcp_servers]"
    assert SERVER_NAME in doc["mcp_servers"], f"{path.name}: missing [mcp_servers.{SERVER_NAME}]"
    entry = doc["mcp_servers"][SERVER_NAME]
    where = f"{path.name}: mcp_servers.{SERVER_NAME}"
    command, args = _check_command_args(entry, where)
    assert entry.get("startup_timeout_sec") == 20, f"{where}: startup_timeout_sec must be 20"
    assert entry.get("tool_timeout_sec") == 120, f"{where}: tool_timeout_sec must be 120"
    assert "url" not in entry, f"{where}: a stdio server has no url"
    return ServerSpec(command, args, _check_env(entry, where))


def parse_zed_settings(path: Path) -> ServerSpec:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert "context_servers" in doc, f"{path.name}: missing 'context_servers'"
    assert SERVER_NAME in doc["context_servers"], f"{path.name}: no context server {SERVER_NAME!r}"
    entry = doc["context_servers"][SERVER_NAME]
    where = f"{path.name}: context_servers.{SERVER_NAME}"
    assert entry.get("source") == "custom", f'{where}: needs "source": "custom"'
    command, args = _check_command_args(entry, where)
    return ServerSpec(command, args, _check_env(entry, where))


# file name -> (extractor, whether the format carries an env block)
SNIPPETS: dict[str, tuple[Callable[[Path], ServerSpec], bool]] = {
    "claude-code.sh": (parse_claude_code_sh, False),
    "claude-code.mcp.json": (lambda p: _json_servers(p, "mcpServers", require_type_stdio=True), True),
    "claude-desktop.json": (lambda p: _json_servers(p, "mcpServers", require_type_stdio=False), True),
    "cursor.mcp.json": (lambda p: _json_servers(p, "mcpServers", require_type_stdio=False), True),
    "vscode.mcp.json": (lambda p: _json_servers(p, "servers", require_type_stdio=True), True),
    "codex.config.toml": (parse_codex_toml, True),
    "windsurf.mcp_config.json": (lambda p: _json_servers(p, "mcpServers", require_type_stdio=False), True),
    "zed.settings.json": (parse_zed_settings, True),
}


def parse_claude_code_hooks(path: Path) -> dict[str, list[str]]:
    """Claude Code settings.json `hooks`: event -> [{"matcher"?, "hooks": [{"type": "command", "command"}]}];
    the command line of each event's one hook, split as a shell would."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert set(doc) == {"hooks"}, f"{path.name}: a settings.json fragment with only 'hooks'"
    commands = {}
    for event, groups in doc["hooks"].items():
        assert isinstance(groups, list) and len(groups) == 1, f"{path.name}: {event} needs one matcher group"
        group = groups[0]
        assert set(group) <= {"matcher", "hooks"}, f"{path.name}: {event}: unknown keys {sorted(group)}"
        [hook] = group["hooks"]
        assert hook["type"] == "command" and isinstance(hook["command"], str), f"{path.name}: {event}"
        assert isinstance(hook.get("timeout", 60), int), f"{path.name}: {event}: timeout is whole seconds"
        commands[event] = shlex.split(hook["command"])
    return commands


def parse_codex_notify(path: Path) -> dict[str, list[str]]:
    """Codex config.toml's top-level `notify`: the program and its arguments; the event is appended."""
    with path.open("rb") as f:
        doc = tomllib.load(f)
    assert set(doc) == {"notify"}, f"{path.name}: only the top-level notify key, got {sorted(doc)}"
    notify = doc["notify"]
    assert isinstance(notify, list) and all(isinstance(a, str) for a in notify), f"{path.name}: a list of strings"
    return {"agent-turn-complete": notify}


# file name -> its extractor: event -> the command line the agent runs for it
HOOK_SNIPPETS: dict[str, Callable[[Path], dict[str, list[str]]]] = {
    "claude-code.hooks.json": parse_claude_code_hooks,
    "codex.notify.toml": parse_codex_notify,
}


def load_snippet(name: str) -> ServerSpec:
    extractor, _ = SNIPPETS[name]
    return extractor(CONFIG_DIR / name)


# --------------------------------------------------------------------------- parse-only tests


def test_parse_every_snippet_file_is_covered():
    on_disk = {p.name for p in CONFIG_DIR.iterdir() if p.is_file() and p.name != "README.md"}
    covered = set(SNIPPETS) | set(HOOK_SNIPPETS)
    assert on_disk == covered, (
        f"untested snippet files: {sorted(on_disk - covered)}; "
        f"listed but missing: {sorted(covered - on_disk)}"
    )
    assert not [p for p in CONFIG_DIR.iterdir() if p.is_dir()], "agent_configs/ should hold only files"


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_parse_snippet(name: str):
    spec = load_snippet(name)
    assert spec.command == EXPECTED_COMMAND
    assert spec.args == EXPECTED_ARGS
    _, has_env = SNIPPETS[name]
    assert spec.env == (EXPECTED_ENV if has_env else {})


def test_parse_readme_lists_every_snippet():
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    for name in [*SNIPPETS, *HOOK_SNIPPETS]:
        assert f"`{name}`" in readme, f"README.md does not mention {name}"
    assert "which mcp-tts" in readme
    assert "python -m mcp_tts serve" in readme
    assert "MCP_TTS_BACKEND" in readme and "optional" in readme.lower()


# --------------------------------------------------------------------------- server tests


@pytest.fixture
def anyio_backend():
    return "asyncio"


def resolve_command(command: str) -> str:
    """`mcp-tts` -> the console script installed next to this interpreter (else PATH)."""
    if os.sep in command or (os.altsep and os.altsep in command):
        return command
    bindir = Path(sys.executable).parent
    for candidate in (bindir / command, bindir / f"{command}.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"{command!r} is neither in {bindir} nor on PATH: is the package installed (pip install -e .)?")
    return found


async def list_tool_names(spec: ServerSpec, *, cwd: Path, errlog, base_env: dict[str, str]) -> set[str]:
    params = StdioServerParameters(
        command=spec.command,
        args=list(spec.args),
        env={**base_env, **spec.env},
        cwd=cwd,
    )
    names: set[str] = set()
    with anyio.fail_after(SESSION_TIMEOUT_S):
        async with stdio_client(params, errlog=errlog) as (read_stream, write_stream):
            async with ClientSession(read_stream, write_stream) as session:
                init = await session.initialize()
                assert init.server_info.name, "server sent no name"
                result = await session.list_tools()
                names.update(t.name for t in result.tools)
                while result.next_cursor is not None:
                    result = await session.list_tools(params=PaginatedRequestParams(cursor=result.next_cursor))
                    names.update(t.name for t in result.tools)
    return names


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(SNIPPETS))
async def test_snippet_starts_server(name: str, tmp_path: Path, home: Path):
    spec = load_snippet(name)
    spec.command = resolve_command(spec.command)
    log_path = tmp_path / "server-stderr.log"
    # Clients start servers from wherever they like: not from the repository.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with log_path.open("w+", encoding="utf-8") as errlog:
        try:
            # the test's own runtime and data dirs, so the hosts the server warms are stopped after it
            base_env = {**os.environ, "MCP_TTS_RUNTIME_DIR": str(home / "run"),
                        "MCP_TTS_DATA_DIR": str(home / "data")}
            names = await list_tool_names(spec, cwd=workdir, errlog=errlog, base_env=base_env)
        except BaseException:
            errlog.flush()
            sys.stderr.write(f"--- server stderr ({name}) ---\n{log_path.read_text(encoding='utf-8')}\n")
            raise
    missing = EXPECTED_TOOLS - names
    assert not missing, f"{name}: server lists {sorted(names)}, missing {sorted(missing)}"


# --------------------------------------------------------------------------- hook snippets


def test_parse_hook_snippets():
    assert set(parse_claude_code_hooks(CONFIG_DIR / "claude-code.hooks.json")) == {"Notification", "Stop"}
    for name, extract in HOOK_SNIPPETS.items():
        for event, argv in extract(CONFIG_DIR / name).items():
            assert argv[:2] == [EXPECTED_COMMAND, "hook"], f"{name}: {event} runs {argv!r}"


@pytest.mark.parametrize("name", sorted(HOOK_SNIPPETS))
def test_hook_snippet_speaks_its_events(name: str, tmp_path: Path, home: Path):
    """Each command runs as its agent runs it (Claude Code: the event on stdin; Codex: as the last
    argument), returns 0 with nothing on stderr, and the detached say it started is written in hook.log.
    No sound server here: the speech goes to a file, which the log names."""
    from tests.test_hook import EVENTS, read_hook_log, wait_for_log

    env = {**os.environ, "MCP_TTS_RUNTIME_DIR": str(home / "run"), "MCP_TTS_DATA_DIR": str(home / "data"),
           "PULSE_SERVER": "unix:/nonexistent/pulse", "MCP_TTS_AUDIO_BACKENDS": "pulseaudio,alsa"}
    commands = HOOK_SNIPPETS[name](CONFIG_DIR / name)
    for event, argv in commands.items():
        payload = json.dumps(EVENTS[event](tmp_path))
        run = [resolve_command(argv[0]), *argv[1:]]
        codex = name.startswith("codex")
        done = subprocess.run(run + [payload] if codex else run, input=None if codex else payload,
                              env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert done.returncode == 0 and done.stderr == "" and done.stdout == "", (event, done)
    entries = wait_for_log(home / "data", len(commands))
    assert all(e.result.get("status") == "saved" and Path(e.result["file_path"]).is_file() for e in entries), \
        read_hook_log(home / "data")
