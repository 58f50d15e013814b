"""The engine side: code that runs in engine host processes, importable as `mcp_tts.engines`.

Rooms: `contract` (what both sides import), `runtime` (the host process), one subpackage per family
(`builtin`, `qwen`, `chatterbox`) and `speaker`. Nothing here imports the server side: a host runs
in its family's venv, which has the standard library, numpy and the family's packages only.
ARCHITECTURE.md at the repository's root draws the whole picture.
"""
