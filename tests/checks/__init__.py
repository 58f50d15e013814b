"""Checks that run inside a family venv (torch, upstream packages) and print one JSON line, which the
tests in the server venv read: `<family venv>/bin/python -m tests.checks.qwen_fast DIR` from the root."""
