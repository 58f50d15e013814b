"""`mcp-tts` and `python -m mcp_tts`: `hook` goes straight to mcp_tts.hook, everything else to the CLI.

An agent runs `mcp-tts hook` at each of its events and waits for it, so it must be done in a blink:
the CLI's imports (pydantic, anyio, the settings) take longer than that on their own.
"""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["hook"]:
        from .hook import main as hook

        return hook(sys.argv[2:])
    from .cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
