"""Starts engine-side code in any interpreter, with the server side out of reach.

    python -I .../engines/launch.py MODULE [ARGS...]     runs MODULE (e.g. mcp_tts.engines.runtime.host)
    python -I .../engines/launch.py -c CODE [ARGS...]    runs CODE, as `python -c` would

A family venv has neither the server package nor pydantic, and must not see the server's
site-packages. This file makes `mcp_tts` an empty package whose only member is `mcp_tts.engines`,
loaded from this folder, so `mcp_tts.engines.*` imports work and `mcp_tts.<server module>` does not,
whatever else the interpreter has installed. Run by the server (host_client.start_host); scripts that
run in a family venv (tests' checks, bench; `python -m` from the repository root) call
`from engines import launch; launch.install()`.
"""

import importlib.util
import runpy
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install() -> None:
    """Registers `mcp_tts` (empty) and `mcp_tts.engines` (this folder) in sys.modules; once."""
    if getattr(sys.modules.get("mcp_tts.engines"), "__file__", None) == str(HERE / "__init__.py"):
        return
    # this folder on sys.path (a script's own folder comes first) would make its rooms top-level names
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    root = types.ModuleType("mcp_tts", "engine side only: the server package is not loaded in engine processes")
    root.__path__ = []
    sys.modules["mcp_tts"] = root
    spec = importlib.util.spec_from_file_location("mcp_tts.engines", HERE / "__init__.py",
                                                  submodule_search_locations=[str(HERE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["mcp_tts.engines"] = module
    root.engines = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: launch.py MODULE [ARGS...] | launch.py -c CODE [ARGS...]")
    install()
    if sys.argv[1] == "-c":
        code = sys.argv[2]
        sys.argv = ["-c", *sys.argv[3:]]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
    else:
        target = sys.argv[1]
        sys.argv = [target, *sys.argv[2:]]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
