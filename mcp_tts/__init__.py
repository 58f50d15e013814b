"""mcp-tts: the voice of AI coding agents, as an MCP server."""

from .version import __version__

__all__ = ["__version__"]
