"""Who may use `mcp-tts http`: a key from MCP_TTS_API_KEY or a key file, sent as `Authorization: Bearer`.
Runs in the `mcp-tts http` process. Without a key the server listens on loopback only."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from pathlib import Path

from ..errors import TTSError


def read_key_file(path: Path) -> str:
    """The key in a file (its first line, stripped): an error naming the file when there is none."""
    try:
        key = path.expanduser().read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TTSError(f"cannot read the API key file {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not key or not key[0].strip():
        raise TTSError(f"the API key file {str(path)!r} is empty: put the key on its first line")
    return key[0].strip()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, key: str | None) -> None:
    """Refuses, before anything listens, to serve another address without a key."""
    if key is None and not is_loopback(host):
        raise TTSError(f"refusing to listen on {host!r} without an API key: anyone who reaches it could use the "
                       f"engines. Set MCP_TTS_API_KEY or pass --api-key-file FILE, or listen on 127.0.0.1 "
                       f"(and reach it through an SSH tunnel)")


class KeyCheck:
    """Compares a request's bearer token with the key in constant time (both hashed first, so neither
    their contents nor their lengths show in the time taken)."""

    def __init__(self, key: str | None) -> None:
        self._digest = hashlib.sha256(key.encode()).digest() if key is not None else None

    @property
    def required(self) -> bool:
        return self._digest is not None

    def allows(self, authorization: str | None) -> bool:
        if self._digest is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        given = hashlib.sha256(token.strip().encode()).digest()
        return hmac.compare_digest(given, self._digest) and scheme.lower() == "bearer"
