#!/bin/sh
# Claude Code: register the mcp-tts server for every project of this user
# (written to ~/.claude.json). Verify with `claude mcp list` or `/mcp` in a session.
#
# Optional: to choose the engine, add `--env MCP_TTS_BACKEND=builtin` before the
# server name, e.g.
#   claude mcp add --transport stdio --scope user --env MCP_TTS_BACKEND=builtin tts -- mcp-tts serve
# If `mcp-tts` is not on Claude Code's PATH, replace it with the absolute path
# printed by `which mcp-tts`.
claude mcp add --transport stdio --scope user tts -- mcp-tts serve
