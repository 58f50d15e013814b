"""A bounded fuzz run in the suite (bench/fuzz.py runs longer ones): random tool calls through the real MCP
client and random raw JSON-RPC lines against `mcp-tts serve`; every request answered once, no server exits,
no file outside the run's folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.fuzz import run

REPO = Path(__file__).resolve().parent.parent


def _worktree() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True).stdout


def test_fuzzed_calls_and_lines_are_all_answered_and_nothing_lands_outside():
    before = _worktree()
    tally = run(calls=300, lines=300, seed=13)
    assert tally.calls == 300 and tally.lines == 300
    assert tally.call_unanswered == 0 and tally.line_unanswered == 0, tally
    assert tally.line_answered_once == tally.line_requests, tally
    assert tally.line_answered_twice == 0 and tally.line_answers_to_notifications == 0, tally
    assert tally.server_exits == 0, tally
    assert tally.call_client_errors == {}, tally
    assert tally.call_results > 30 and tally.call_tool_errors > 30, tally  # both paths were exercised
    assert tally.files_outside == [] and _worktree() == before, tally
