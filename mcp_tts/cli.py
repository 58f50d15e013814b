"""The `mcp-tts` command: the MCP server, and the same speech from a terminal.

    mcp-tts serve                       MCP stdio server (what agent configs run)
    mcp-tts say "text" [-v VOICE] [-b BACKEND] [-o out.wav]
    mcp-tts voices [-b BACKEND]
    mcp-tts voices add NAME --audio FILE --text "what the recording says"
    mcp-tts install FAMILY [--cpu|--cuda]
    mcp-tts download BACKEND [--model ID]
    mcp-tts hosts [status|stop]
    mcp-tts doctor
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
from pydantic import ValidationError

from . import families, paths
from .config import Settings
from .errors import TTSError
from .host_client import HostState, open_hosts, stop_service, survey
from .request import SayRequest, explain_validation
from .version import __version__

SERVICES = ("builtin", "speaker", "qwen", "chatterbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-tts", description="Speech for AI coding agents, over MCP.")
    parser.add_argument("--version", action="version", version=f"mcp-tts {__version__}")
    parser.add_argument("--log-level", default=Settings.from_env().log_level)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the MCP stdio server")
    say = sub.add_parser("say", help="speak text now")
    field = SayRequest.model_fields  # the say tool's own request model: one set of limits and descriptions
    say.add_argument("text", help=field["text"].description)
    say.add_argument("-v", "--voice", help=field["voice"].description)
    say.add_argument("-b", "--backend", help=field["backend"].description)
    say.add_argument("-m", "--model", help=field["model"].description)
    say.add_argument("-l", "--language", help=field["language"].description)
    say.add_argument("-i", "--instruct", help=field["instruct"].description)
    say.add_argument("-s", "--speed", type=float, default=field["speed"].default, help=field["speed"].description)
    say.add_argument("-o", "--output-file", help="write the audio here (.wav, .flac, .ogg) instead of playing; "
                                                 "an existing file of that name is replaced")
    say.add_argument("--raw", action="store_true", help=field["raw"].description)
    say.add_argument("--json", action="store_true", help="print the result as JSON")
    voices = sub.add_parser("voices", help="list voices, or add one from a recording")
    voices.add_argument("-b", "--backend")
    voices.add_argument("--json", action="store_true")
    voices_sub = voices.add_subparsers(dest="voices_command")
    add = voices_sub.add_parser("add", help="save a cloneable voice from your own recording")
    add.add_argument("name")
    add.add_argument("--audio", required=True, help="a recording of one speaker, 3-30 s (WAV, FLAC, OGG, MP3)")
    add.add_argument("--text", required=True, help="exactly what the recording says")
    _add_install_parser(sub)
    _add_download_parser(sub)
    hosts = sub.add_parser("hosts", help="engine hosts: status, or stop them")
    hosts.add_argument("action", nargs="?", choices=("status", "stop"), default="status")
    sub.add_parser("doctor", help="check audio output, families, GPU and hosts")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.command == "serve":
        from .server import serve

        serve()
        return 0
    settings = Settings.from_env()
    try:
        if args.command == "install":
            return _install(settings, args)
        if args.command == "download":
            return _download(settings, args)
        if args.command == "voices" and args.voices_command == "add":
            from .voices import add_recording

            manifest = add_recording(settings.voices_dir, args.name, Path(args.audio), args.text)
            print(f"saved voice {manifest.name!r}: usable with {', '.join(manifest.usable_with)}")
            return 0
        return anyio.run({"say": _say, "voices": _voices, "hosts": _hosts, "doctor": _doctor}[args.command],
                         settings, args)
    except TTSError as exc:
        print(f"mcp-tts: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # the say tool's request model refused it, as it would the tool call
        print(f"mcp-tts: {explain_validation(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # one the commands did not name themselves: still its cause and its path
        print(f"mcp-tts: {paths.os_error(exc, exc.filename, 'cannot use')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


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


def _install(settings: Settings, args: argparse.Namespace) -> int:
    from .install import Interrupted, install

    try:
        install(settings, args.family, args.device, force=args.force, say=lambda line: print(line, flush=True))
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


async def _with_speech(settings: Settings, work):
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
    return 0


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


def _describe(state: HostState) -> str:
    report = state.report
    if report is None:
        return state.problem or "not answering"
    return (f"pid {report.pid}, up {report.uptime:.0f} s, idle {report.idle_for:.0f}/{report.idle_timeout:.0f} s, "
            f"{report.connections} connection(s), {report.active} active, {report.served} served"
            + (f", {json.dumps(report.details)}" if report.details else ""))


async def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    problems = 0
    print(f"mcp-tts {__version__}, Python {sys.version.split()[0]} at {sys.executable}")
    print(f"data dir: {settings.data_dir}\nruntime dir: {settings.runtime_dir}")
    audio = _check_audio()
    print(f"audio output: {audio}")
    for family in families.FAMILIES.values():
        python = families.interpreter(family, settings)
        state = f"installed ({python})" if python else f"not installed ({families.install_command(family)})"
        print(f"family {family.name}: {state}; backends {', '.join(family.backends)}")
    print(f"GPU: {_check_gpu()}")
    try:
        from .engines.builtin.espeak import Espeak

        espeak = Espeak()
        print(f"espeak-ng: {len(espeak.voices())} voices at {espeak.sample_rate} Hz")
    except Exception as exc:
        problems += 1
        print(f"espeak-ng: FAILED ({exc})")
    states = await survey(settings.runtime_dir, SERVICES)
    print("hosts: " + (", ".join(f"{s.service} ({f'pid {s.report.pid}' if s.report else s.problem})"
                                 for s in states) or "none running"))
    return 1 if problems else 0


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
