"""Checks on the text an agent asks to speak, before any engine sees it."""

from __future__ import annotations

import unicodedata

from .errors import TTSError

ALLOWED_CONTROLS = {"\n", "\t", "\r"}


def check_text(text: str, limit: int) -> str:
    """The text to speak, stripped; an error that says what is wrong and what is accepted."""
    if not isinstance(text, str):
        raise TTSError("text must be a string")
    stripped = text.strip()
    if not stripped:
        raise TTSError("text is empty or only whitespace: give one or more sentences to speak")
    if len(stripped) > limit:
        raise TTSError(f"text is {len(stripped)} characters; at most {limit} are spoken in one call "
                       f"(MCP_TTS_MAX_TEXT_CHARS): split it, or say a summary")
    offset = len(text) - len(text.lstrip())  # positions count in the text as sent
    for index, char in enumerate(stripped, start=offset):
        if char not in ALLOWED_CONTROLS and unicodedata.category(char) in ("Cc", "Cs"):
            raise TTSError(f"text holds the control character U+{ord(char):04X} at position {index}; "
                           f"only printable text, newlines and tabs are accepted")
    return stripped
