"""mcp-tts tests. A package, so tests, their helpers and bench import each other by name (run bench and
the family-venv checks as `python -m` from the repository root)."""
