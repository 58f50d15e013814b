"""Test fixtures and helpers by concern: the sound server, per-test homes and hosts, the MCP client,
the model families and their tiny checkpoints, and a scripted engine host."""
