"""The `mcp-tts` command: the MCP server, and the same speech from a terminal.

    mcp-tts serve                       MCP stdio server (what agent configs run)
    mcp-tts http [--host H] [--port P]  OpenAI-compatible speech server (POST /v1/audio/speech)
    mcp-tts say "text" [-v VOICE] [-b BACKEND] [-o out.wav]
    mcp-tts voices [-b BACKEND]
    mcp-tts voices add NAME --audio FILE --text "what the recording says"
    mcp-tts voices remove NAME
    mcp-tts install FAMILY [--cpu|--cuda] [--python PATH] [--find-links DIR --no-index]
    mcp-tts download BACKEND [--model ID]
    mcp-tts hosts [status|stop]
    mcp-tts pause|resume|skip|stop      the speaker queue, every agent's speech
    mcp-tts hook                        speak an agent hook event (JSON on stdin); see mcp_tts/hook.py
    mcp-tts doctor
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from . import families, paths
from .config import Settings
from .errors import TTSError
from .request import SayRequest, explain_validation
from .version import __version__
from .voices import REFERENCE_SECONDS

if TYPE_CHECKING:  # host_client (anyio's sockets) loads for the commands that talk to hosts
    from .host_client import HostState

SERVICES = ("builtin", "speaker", "qwen", "chatterbox")
PLAYBACK_ACTIONS = {
    "pause": "pause every agent's speech where it is, until `mcp-tts resume`",
    "resume": "resume paused speech from where it stopped",
    "skip": "end the utterance playing now; the queue goes on",
    "stop": "end the utterance playing now and drop every queued one",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as JSON when the command line asks for --json."""

    json_errors = False

    def error(self, message: str):  # type: ignore[override]
        if _Parser.json_errors:
            print(json.dumps({"error": f"{self.prog}: {message}"}))
            self.exit(2)
        super().error(message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse asks the terminal's size for every argument it adds (a formatter each): once is enough
        return self.formatter_class(prog=self.prog, width=_help_width())


@functools.cache
def _help_width() -> int:
    return shutil.get_terminal_size().columns - 2  # argparse's own choice


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="mcp-tts", description="Speech for AI coding agents, over MCP; and the same speech from "
                                                 "a terminal.")
    parser.add_argument("--version", action="version", version=f"mcp-tts {__version__}")
    parser.add_argument("--log-level", default=(settings or Settings.from_env()).log_level, metavar="LEVEL",
                        type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                        help="DEBUG, INFO, WARNING (default, or MCP_TTS_LOG_LEVEL), ERROR or CRITICAL; at INFO and "
                             "DEBUG the audio libraries' own messages are shown too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run the MCP stdio server (what agent configs run)",
                   description="The MCP stdio server: JSON-RPC on stdin and stdout, one per agent session.")
    _add_http_parser(sub)
    say = sub.add_parser("say", help="speak text now", description="Speak text now, through the same request as "
                                                                  "the say tool (one set of limits).")
    field = SayRequest.model_fields  # the say tool's own request model: one set of limits and descriptions
    slowest, fastest = [getattr(m, k) for m in field["speed"].metadata for k in ("ge", "le") if hasattr(m, k)]
    say.add_argument("text", help=field["text"].description)
    # the tool's descriptions, where they point at tools, pointed at this command's own (`mcp-tts voices`)
    say.add_argument("-v", "--voice", help="a preset voice of the backend or a saved voice (see `mcp-tts voices`); "
                                           "default: MCP_TTS_VOICE, else the backend's")
    say.add_argument("-b", "--backend", help="backend for this call (see `mcp-tts voices`); default: MCP_TTS_BACKEND, "
                                             "else builtin")
    say.add_argument("-m", "--model", help="model of the backend: a hub id, or a local checkpoint directory; "
                                           "default: MCP_TTS_MODEL, else the backend's first")
    say.add_argument("-l", "--language", help=field["language"].description)
    say.add_argument("-i", "--instruct", help=field["instruct"].description)
    say.add_argument("-s", "--speed", type=float, default=field["speed"].default,
                     help=f"speaking rate, {slowest:.1f}-{fastest:.1f}; 1.0 is normal")
    say.add_argument("-o", "--output-file", metavar="FILE", help="write the audio here (.wav, .flac, .ogg) instead "
                                                                 "of playing; an existing file of that name is "
                                                                 "replaced")
    say.add_argument("--raw", action="store_true", help=field["raw"].description)
    say.add_argument("--json", action="store_true", help="print the result, or the error, as JSON")
    voices = sub.add_parser("voices", help="list voices; add or remove a saved voice",
                            description="List every backend's voices and the saved voices; add a voice from a "
                                        "recording, or remove a saved one.")
    voices.add_argument("-b", "--backend", help="only this backend's voices, in full")
    voices.add_argument("--json", action="store_true", help="print the list, or the error, as JSON")
    voices_sub = voices.add_subparsers(dest="voices_command", metavar="ACTION")
    lo, hi = REFERENCE_SECONDS
    add = voices_sub.add_parser("add", help="save a cloneable voice from your own recording",
                                description="Save a cloneable voice (for qwen-base and chatterbox) from a recording "
                                            "of your own.")
    add.add_argument("name", help="name to save it under: letters, digits, '_', '-', '.'")
    add.add_argument("--audio", required=True, metavar="FILE",
                     help=f"a recording of one speaker, {lo:.0f}-{hi:.0f} s, 16 kHz or more (WAV, FLAC, OGG, MP3)")
    add.add_argument("--text", required=True, help="exactly what the recording says")
    add.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the saved voice, or the "
                                                                                   "error, as JSON")
    remove = voices_sub.add_parser("remove", help="delete a saved voice", description="Delete a saved voice (its "
                                                                                      "folder under the data dir).")
    remove.add_argument("name", help="the saved voice's name, as `mcp-tts voices` lists it")
    remove.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result, or the "
                                                                                      "error, as JSON")
    _add_install_parser(sub)
    _add_download_parser(sub)
    hosts = sub.add_parser("hosts", help="engine hosts: status, or stop them")
    hosts.add_argument("action", nargs="?", choices=("status", "stop"), default="status",
                       help="status (default): what runs, idle for how long; stop: stop them all, frozen ones too")
    for action, what in PLAYBACK_ACTIONS.items():
        command = sub.add_parser(action, help=what, description=f"{what[0].upper()}{what[1:]}.")
        command.add_argument("--json", action="store_true", help="print the result, or the error, as JSON")
    sub.add_parser("hook", help="speak an agent hook event read as JSON on stdin (see `mcp-tts hook --help`)",
                   add_help=False)  # parsed by mcp_tts.hook, which `mcp-tts hook` reaches without this module
    sub.add_parser("doctor", help="check audio output, families, GPU and hosts",
                   description="Check audio output, the installed families, GPU, espeak-ng and the running hosts.")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hook"]:  # its own parser; the console script reaches it without importing this module
        from .hook import main as hook

        return hook(argv[1:])
    _Parser.json_errors = "--json" in argv
    settings = Settings.from_env()  # once: it reads and validates every MCP_TTS_* variable
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.command is None:  # `mcp-tts` alone: the help, and the usage error's status for a script that forgot
        parser.print_help()
        return 2
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.command == "serve":
        from .server import serve

        serve()
        return 0
    try:
        if args.command == "http":
            from .http.serve import serve as serve_http

            serve_http(settings, args.host, args.port, args.api_key_file, args.ssl_certfile, args.ssl_keyfile,
                       args.log_level)
            return 0
        if args.command == "install":
            return _install(settings, args)
        if args.command == "download":
            return _download(settings, args)
        if args.command == "voices" and args.voices_command == "add":
            from .voices import add_recording

            manifest = add_recording(settings.voices_dir, args.name, Path(args.audio), args.text)
            if args.json:
                print(manifest.model_dump_json(indent=2))
            else:
                print(f"saved voice {manifest.name!r}: usable with {', '.join(manifest.usable_with)}")
            return 0
        if args.command == "voices" and args.voices_command == "remove":
            from .voices import VoiceLibrary

            where = VoiceLibrary(settings.voices_dir).delete(args.name)
            print(json.dumps({"removed": args.name, "path": str(where)}) if args.json
                  else f"removed voice {args.name!r} ({where})")
            return 0
        if args.command in PLAYBACK_ACTIONS:
            return anyio.run(_playback, settings, args)
        return anyio.run({"say": _say, "voices": _voices, "hosts": _hosts, "doctor": _doctor}[args.command],
                         settings, args)
    except TTSError as exc:
        return _fail(args, str(exc))
    except ValidationError as exc:  # the say tool's request model refused it, as it would the tool call
        return _fail(args, explain_validation(exc))
    except OSError as exc:  # one the commands did not name themselves: still its cause and its path
        return _fail(args, str(paths.os_error(exc, exc.filename, "cannot use")))
    except KeyboardInterrupt:
        return 130


def _add_http_parser(sub) -> None:
    http = sub.add_parser("http", help="serve speech over HTTP: the OpenAI speech API (POST /v1/audio/speech)",
                          description="An OpenAI-compatible speech server in front of this machine's engine hosts. "
                                      "It returns audio, never plays it. Without a key it listens on loopback only.")
    http.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1); any other "
                                                          "needs a key")
    http.add_argument("--port", type=int, default=8750, help="port (default 8750)")
    http.add_argument("--api-key-file", type=Path, metavar="FILE", help="a file whose first line is the key clients "
                                                                        "send as 'Authorization: Bearer KEY'; default: "
                                                                        "MCP_TTS_API_KEY")
    http.add_argument("--ssl-certfile", type=Path, metavar="FILE", help="TLS certificate (PEM), passed to uvicorn")
    http.add_argument("--ssl-keyfile", type=Path, metavar="FILE", help="TLS private key (PEM), passed to uvicorn")


def _add_install_parser(sub) -> None:
    install = sub.add_parser("install", help="create a neural family's venv (qwen, chatterbox)",
                             description="Creates the family's own venv with its pinned packages (several GB, "
                                         "minutes). The package indexes are checked first; pip's full output "
                                         "goes to install.log in the family's folder.")
    install.add_argument("family", choices=("qwen", "chatterbox"), help="the model family to install")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--cpu", dest="device", action="store_const", const="cpu",
                       help="CPU builds of torch (from MCP_TTS_TORCH_INDEX_URL on Linux; \"\" for pip's own index)")
    where.add_argument("--cuda", dest="device", action="store_const", const="cuda",
                       help="CUDA builds of torch, from pip's own index (the default where nvidia-smi is found)")
    install.add_argument("--force", action="store_true", help="reinstall even if the same set is installed")
    install.add_argument("--python", metavar="PATH", help="build on this interpreter's torch (a conda env's, a venv's, "
                                                          "the system's python): only what it lacks is installed")
    install.add_argument("--find-links", metavar="DIR", action="append", default=[],
                         help="also take packages from this folder of wheels (repeatable)")
    install.add_argument("--no-index", action="store_true", help="only from --find-links: an install offline")


def _install(settings: Settings, args: argparse.Namespace) -> int:
    from .install import Interrupted, Sources, install

    sources = Sources(tuple(args.find_links), args.no_index)
    try:
        install(settings, args.family, args.device, force=args.force, say=lambda line: print(line, flush=True),
                python=args.python, sources=sources)
    except Interrupted as exc:
        return 128 + exc.signum
    return 0


def _add_download_parser(sub) -> None:
    from .engines.contract.catalog import BACKENDS

    download = sub.add_parser("download", help="fetch a backend's published weights into the Hugging Face cache",
                              description="Fetches a published checkpoint into the Hugging Face cache (HF_HOME), "
                                          "through the family's venv, which must be installed first.")
    download.add_argument("backend", choices=[name for name, b in BACKENDS.items() if b.family != "builtin"],
                          help="the backend whose weights to fetch")
    download.add_argument("--model", metavar="ID", help="one of the backend's published models (default: its first)")


def _download(settings: Settings, args: argparse.Namespace) -> int:
    from .download import download
    from .install import Interrupted

    try:
        download(settings, args.backend, args.model, say=lambda line: print(line, flush=True))
    except Interrupted as exc:
        return 128 + exc.signum
    return 0


def _fail(args: argparse.Namespace, message: str) -> int:
    """An error as the command was asked to answer: {"error": ...} on stdout with --json, else a line on stderr."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    else:
        print(f"mcp-tts: {message}", file=sys.stderr)
    return 2


async def _with_speech(settings: Settings, work):
    from .host_client import open_hosts
    from .speech import Speech

    idle = {"speaker": settings.speaker_idle_timeout}
    idle.update({f.service: settings.idle_timeout for f in families.FAMILIES.values()})
    failure: TTSError | None = None
    async with open_hosts(settings.runtime_dir, idle) as hosts, anyio.create_task_group() as tg:
        try:
            return await work(Speech(settings, hosts, tg))
        except TTSError as exc:  # raised here, not through the task group, so it is not wrapped
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    raise failure


async def _say(settings: Settings, args: argparse.Namespace) -> int:
    request = SayRequest(text=args.text, voice=args.voice, backend=args.backend, model=args.model,
                         language=args.language, instruct=args.instruct, speed=args.speed, raw=args.raw,
                         output="file" if args.output_file else "auto", wait="end", file_path=args.output_file,
                         overwrite=True)
    # the person at their shell may write wherever they can already: no confinement (paths.py); -o replaces
    result, _ = await _with_speech(settings, lambda speech: speech.say(request, folders=paths.ANYWHERE))
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        where = result.file_path if result.output == "file" else result.device
        print(f"{result.status}: {result.audio_seconds or 0:.2f} s of {result.backend}/{result.voice} "
              f"-> {where} (first audio after {result.time_to_first_audio_ms or 0:.0f} ms)")
        for note in result.notes:
            print(f"  note: {note}")
        warm = _still_warm(settings, result.backend, speaker=not args.output_file)
        if warm:
            print(warm, file=sys.stderr)
    return 0


def _still_warm(settings: Settings, backend: str, speaker: bool) -> str:
    """What a one-off `say` leaves running: the engine host, and the speaker where it was asked to play (it
    is started then even if it finds no device), until they have been idle for their timeouts."""
    from .remote import is_remote

    if is_remote(backend):  # spoken by the remote: no engine host here
        return (f"mcp-tts: the speaker stays warm for {_duration(settings.speaker_idle_timeout)} of idle time; "
                f"`mcp-tts hosts stop` stops it now") if speaker else ""
    service = families.family_of(backend).service
    line = f"mcp-tts: the {service} engine host stays warm for {_duration(settings.idle_timeout)} of idle time"
    if not speaker:
        return line + "; `mcp-tts hosts stop` stops it now"
    return line + f", the speaker for {_duration(settings.speaker_idle_timeout)}; `mcp-tts hosts stop` stops them now"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


async def _voices(settings: Settings, args: argparse.Namespace) -> int:
    result = await _with_speech(settings, lambda speech: speech.list_voices(args.backend, start_hosts=True))
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    for entry in result.backends:
        state = "installed" if entry.installed else f"not installed: {entry.install_command}"
        print(f"{entry.backend} ({state}) - {entry.description}")
        names = [v.name for v in entry.voices]
        if names:
            print("  voices: " + ", ".join(names))
        if entry.variants:
            print("  variants (append as voice+variant): " + ", ".join(entry.variants))
    print("saved voices:" if result.library else "saved voices: (none)")
    for voice in result.library:
        print(f"  {voice.name} [{voice.kind}, by {voice.made_by}] usable with {', '.join(voice.usable_with)}"
              + (f" - {voice.description}" if voice.description else ""))
    for problem in result.problems:
        print(f"  problem: {problem}")
    return 0


async def _hosts(settings: Settings, args: argparse.Namespace) -> int:
    """Answers within a second whatever state the hosts are in; `stop` stops frozen ones too."""
    from .host_client import stop_service, survey

    if args.action == "stop":
        done: dict[str, str | None] = {}

        async def stop(service: str) -> None:
            done[service] = await stop_service(settings.runtime_dir, service)

        async with anyio.create_task_group() as tg:
            for service in SERVICES:
                tg.start_soon(stop, service)
        for service in SERVICES:
            if done.get(service):
                print(f"{service}: {done[service]}")
        return 0
    states = await survey(settings.runtime_dir, SERVICES)
    if not states:
        print(f"no engine hosts running (runtime dir {settings.runtime_dir})")
    for state in states:
        print(f"{state.service}: {_describe(state)}")
    return 0


async def _playback(settings: Settings, args: argparse.Namespace) -> int:
    from .host_client import open_hosts
    from .playback import control

    async with open_hosts(settings.runtime_dir, {}) as hosts:
        result = await control(hosts, args.command)
    print(result.model_dump_json(indent=2) if args.json else result.summary)
    return 0


def _describe(state: HostState) -> str:
    report = state.report
    if report is None:
        return state.problem or "not answering"
    return (f"pid {report.pid}, up {report.uptime:.0f} s, idle {report.idle_for:.0f}/{report.idle_timeout:.0f} s, "
            f"{report.connections} connection(s), {report.active} active, {report.served} served"
            + (f", {json.dumps(report.details)}" if report.details else ""))


async def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from .host_client import survey

    problems = 0
    print(f"mcp-tts {__version__}, Python {sys.version.split()[0]} at {sys.executable}")
    print(f"data dir: {settings.data_dir}\nruntime dir: {settings.runtime_dir}")
    with _quiet_stderr(logging.getLogger().getEffectiveLevel() > logging.INFO):
        audio = _check_audio()
    print(f"audio output: {audio}")
    for family in families.FAMILIES.values():
        python = families.interpreter(family, settings)
        state = f"installed ({python})" if python else f"not installed ({families.install_command(family)})"
        if python and (base := _base_python(settings, family.name)):  # `install --python`: torch is that one's
            state += f" over {base}'s torch" + ("" if Path(base).exists() else
                                                " - which is gone: install the family again")
            problems += not Path(base).exists()
        print(f"family {family.name}: {state}; backends {', '.join(family.backends)}")
    print(f"GPU: {_check_gpu()}")
    try:
        from .engines.builtin.espeak import Espeak

        espeak = Espeak()
        print(f"espeak-ng: {len(espeak.voices())} voices at {espeak.sample_rate} Hz")
    except Exception as exc:
        problems += 1
        print(f"espeak-ng: FAILED ({exc})")
    if settings.remote_url:
        problems += await _check_remote(settings)
    if settings.remote_url:
        problems += await _check_remote(settings)
    states = await survey(settings.runtime_dir, SERVICES)
    print("hosts: " + (", ".join(f"{s.service} ({f'pid {s.report.pid}' if s.report else s.problem})"
                                 for s in states) or "none running"))
    return 1 if problems else 0


def _base_python(settings: Settings, family: str) -> str | None:
    from .install import installed_recipe

    return (installed_recipe(settings, family) or {}).get("base_python") or None


async def _check_remote(settings: Settings) -> int:
    """The remote's line: its health and round trip, and what it offers; 1 when it does not answer."""
    from .remote import PREFIX, Remote

    server = Remote(settings.remote_url, settings.remote_api_key)
    try:
        await server.health()  # the connection made, then timed: the round trip of a say, not a handshake's
        answer, ms = await server.health()
        catalog = await server.catalog()
    except TTSError as exc:
        print(f"remote: {server.url}: FAILED ({exc})")
        return 1
    kind = f"mcp-tts {answer.get('version', '')}".strip() if answer.get("server") == "mcp-tts" else "OpenAI-compatible"
    print(f"remote: {server.url} ({kind}): {answer.get('status', 'answering')}, {ms:.0f} ms round trip; backends "
          f"{', '.join(PREFIX + name for name in catalog.backends) or 'none'}")
    return 0


@contextmanager
def _quiet_stderr(quiet: bool):
    """Silences what C libraries write to fd 2 meanwhile (ALSA's "cannot find card '0'", dozens of lines on a
    machine without sound); --log-level INFO or DEBUG lets it through."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_audio() -> str:
    try:
        import miniaudio

        device = miniaudio.PlaybackDevice(output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1,
                                          sample_rate=24000, app_name="mcp-tts doctor")
        backend = device.backend
        device.close()
        if backend.lower() == "null":
            return "none (only the null backend): speech goes to WAV files"
        return f"{backend} default output"
    except Exception as exc:
        return f"none ({exc}): speech goes to WAV files, or attached audio with output='audio'"


def _check_gpu() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "none found (no nvidia-smi); the builtin engine needs none"
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout.strip()
        return out or "nvidia-smi found no GPU"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"
