"""`mcp-tts download BACKEND [--model ID]`: a published checkpoint fetched into the Hugging Face cache.

Runs in the CLI's process; the fetch itself runs in the family's venv (huggingface_hub's
snapshot_download, whose progress bars go to the terminal as they are), so the weights land where
the family's engine host looks for them: the same HF_HOME, the same cache layout. The checks that
can fail fast (an unknown model, an uninstalled family, HF_HUB_OFFLINE, an unreachable hub) come
first, within seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable

from .config import Settings
from .errors import TTSError
from .families import FAMILIES, backend, install_command, interpreter
from .install import INDEX_TIMEOUT, interrupts_raise, stop_process, unreachable

HUB = "https://huggingface.co"
TRUE = ("1", "true", "yes", "on")

# Runs in the family venv (python -I): the plan (files, bytes, cache folder), then the fetch; one JSON
# object per line on stdout, the progress bars on stderr.
FETCH = r"""
import json, sys
def tell(**event):
    print(json.dumps(event), flush=True)
try:
    from huggingface_hub import HfApi, constants, snapshot_download
    model = sys.argv[1]
    try:
        info = HfApi().model_info(model, files_metadata=True)
        files = info.siblings or []
        tell(event="plan", files=len(files), bytes=sum(f.size or 0 for f in files), cache=str(constants.HF_HUB_CACHE),
             revision=info.sha)
    except Exception as exc:
        tell(event="error", kind=type(exc).__name__, message=str(exc).splitlines()[0][:300] if str(exc) else "")
        raise SystemExit(1)
    path = snapshot_download(model)
    tell(event="done", path=path)
except KeyboardInterrupt:
    raise SystemExit(130)
except Exception as exc:
    tell(event="error", kind=type(exc).__name__, message=str(exc).splitlines()[0][:300] if str(exc) else "")
    raise SystemExit(1)
"""


def download(settings: Settings, backend_name: str, model: str | None = None,
             say: Callable[[str], None] = print) -> str:
    """Fetches `model` (default: the backend's first published one) into the Hugging Face cache; returns
    its snapshot folder."""
    spec = backend(backend_name)
    if spec.family == "builtin":
        raise TTSError("the builtin backend (espeak-ng) has no weights to download")
    model = model or spec.models[0]
    if model not in spec.models:
        raise TTSError(f"unknown model {model!r} for backend {backend_name!r}; published models: "
                       f"{', '.join(spec.models)} (a local checkpoint directory needs no download: "
                       f"pass it as `-m DIR` to `mcp-tts say`)")
    family = FAMILIES[spec.family]
    python = interpreter(family, settings)
    if python is None:
        raise TTSError(f"the {family.name} family, which downloads and runs {backend_name!r}, is not installed "
                       f"(no venv at {settings.families_dir / family.name / 'venv'}); install it first with "
                       f"`{install_command(family)}`, then run `mcp-tts download {backend_name}` again")
    offline = os.environ.get("HF_HUB_OFFLINE", "")
    if offline.strip().lower() in TRUE:
        raise TTSError(f"HF_HUB_OFFLINE is set ({offline}): Hugging Face downloads are off; unset it to download "
                       f"{model}, or fetch it on a machine with network access and copy the Hugging Face cache")
    endpoint = os.environ.get("HF_ENDPOINT") or HUB
    problem = unreachable(endpoint, INDEX_TIMEOUT)
    if problem is not None:
        raise TTSError(f"cannot reach the Hugging Face Hub at {endpoint}"
                       + (" (HF_ENDPOINT)" if os.environ.get("HF_ENDPOINT") else "")
                       + f": {problem}; {model} was not downloaded. Check the network (or HF_ENDPOINT), or "
                       "fetch it elsewhere and pass the checkpoint folder as `-m DIR` to `mcp-tts say`")
    say(f"{backend_name}: fetching {model} into the Hugging Face cache")
    with interrupts_raise():
        return _fetch(python, backend_name, model, say)


def _fetch(python, backend_name: str, model: str, say: Callable[[str], None]) -> str:
    process = subprocess.Popen([str(python), "-I", "-c", FETCH, model], stdout=subprocess.PIPE, text=True)
    events: list[dict] = []
    assert process.stdout is not None
    try:
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            events.append(event)
            if event.get("event") == "plan":
                size = event["bytes"]
                size = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
                say(f"{backend_name}: {event['files']} files, {size}, into {event['cache']}"
                    " (files already there are not fetched again)")
        process.wait()
    except BaseException:
        stop_process(process)
        say(f"{backend_name}: download interrupted; what was fetched stays in the cache, and a new "
            f"`mcp-tts download {backend_name}` resumes it")
        raise
    done = [e for e in events if e.get("event") == "done"]
    if process.returncode == 0 and done:
        say(f"{backend_name}: {model} is in the cache ({done[-1]['path']}); `mcp-tts say -b {backend_name}` uses it")
        return done[-1]["path"]
    failure = next((e for e in events if e.get("event") == "error"), None)
    raise TTSError(_explain(model, failure, process.returncode))


def _explain(model: str, failure: dict | None, code: int) -> str:
    if failure is None:
        return f"downloading {model} failed (exit {code}) without saying why"
    kind, message = failure.get("kind", ""), failure.get("message", "")
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return (f"the Hugging Face Hub refused {model} ({kind}): {message}. A gated model needs a token "
                "(`hf auth login`, or HF_TOKEN)")
    if kind in ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectionError", "ConnectTimeout",
                "ReadTimeout", "ConnectError"):
        return f"downloading {model} failed: no connection to the Hugging Face Hub ({kind}: {message})"
    return f"downloading {model} failed ({kind}: {message})"
