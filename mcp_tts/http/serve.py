"""`mcp-tts http`: uvicorn serving the app, after the checks that must come before anything listens."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import Settings
from .auth import check_listen, read_key_file


def serve(settings: Settings, host: str, port: int, key_file: Path | None = None, certfile: Path | None = None,
          keyfile: Path | None = None, log_level: str = "warning") -> None:
    """Serves until interrupted. The key: --api-key-file, else MCP_TTS_API_KEY; TLS: uvicorn's own options."""
    import uvicorn

    from ..families import backend
    from .app import create_app

    backend(settings.backend)  # its default backend (tts-1) is one of this machine's: an unknown one is named now
    key = read_key_file(key_file) if key_file is not None else settings.api_key
    check_listen(host, key)
    scheme = "https" if certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"mcp-tts http: the OpenAI speech API at {scheme}://{shown}:{port}/v1/audio/speech "
          f"({'a key is required' if key else 'no key: loopback only'}); Ctrl-C stops it", file=sys.stderr, flush=True)
    config = uvicorn.Config(create_app(settings, key), host=host, port=port, log_level=log_level.lower(),
                            ssl_certfile=str(certfile) if certfile else None,
                            ssl_keyfile=str(keyfile) if keyfile else None, lifespan="on",
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()
