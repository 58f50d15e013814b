"""Speech that starts at once and sounds right (issue 6), through the real MCP client and real hosts: long
text in pieces joined without clicks, with progress; the phrase cache. That the engine is sent speakable
text, or the raw text, is orchestration: tests/test_orchestration.py."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mcp_tts.phrase_cache import PhraseCache, PhraseKey
from tests.support.homes import server_env
from tests.support.mcp_client import mcp_session

pytestmark = pytest.mark.anyio

LONG = ("The build finished on the first try. All four hundred tests passed, and the coverage went up. "
        "Next I will update the changelog. Then I will tag the release and push it. "
        "After that the documentation site needs a rebuild. Finally, I will tell the team.")


def read(path) -> np.ndarray:
    data, _ = sf.read(path, dtype="float32")
    return data


async def say_to_file(session, tmp_path, name: str, **args) -> tuple[dict, np.ndarray]:
    path = tmp_path / f"{name}.wav"
    result = await session.call_tool("say", {"output": "file", "file_path": str(path), **args})
    assert not result.is_error, result.content
    return result.structured_content, read(path)


async def test_long_text_in_pieces_joins_like_one_piece(home, pulse, tmp_path):
    async with mcp_session(server_env(home, pulse, MCP_TTS_PHRASE_CACHE_MB="0",
                                      MCP_TTS_ALLOWED_DIRS=str(tmp_path))) as session:
        _, whole = await say_to_file(session, tmp_path, "whole", text=LONG)
    home_pieces = home / "pieces"
    home_pieces.mkdir()
    (home_pieces / "data").mkdir()
    env = server_env(home, pulse, MCP_TTS_PHRASE_CACHE_MB="0", MCP_TTS_PIECE_CHARS="60",
                     MCP_TTS_ALLOWED_DIRS=str(tmp_path), MCP_TTS_RUNTIME_DIR=str(home_pieces / "run"),
                     MCP_TTS_DATA_DIR=str(home_pieces / "data"))
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done, total, message) -> None:
        seen.append((done, total, message))

    try:
        async with mcp_session(env) as session:
            path = tmp_path / "pieces.wav"
            result = await session.call_tool("say", {"text": LONG, "output": "file", "file_path": str(path)},
                                             progress_callback=progress)
            assert not result.is_error, result.content
    finally:
        from tests.support.homes import stop_hosts
        stop_hosts(home_pieces / "run")
    pieces = read(path)
    parts = [m for _, _, m in seen if m and "part" in m]
    assert len(parts) >= 5, seen  # every sentence a piece, each reported before the result
    assert parts[-1].endswith(f"of {len(parts)}")
    assert abs(len(pieces) - len(whole)) / len(whole) < 0.05, (len(pieces), len(whole))
    # no click where pieces meet: no sample-to-sample jump beyond what the speech itself has
    assert np.abs(np.diff(pieces)).max() <= 1.25 * np.abs(np.diff(whole)).max()


def test_phrase_cache_keeps_within_its_size_bound(tmp_path):
    cache = PhraseCache(tmp_path, max_bytes=3 * 4 * 22050 + 3000)  # room for about three 1 s phrases
    keys = [PhraseKey("builtin", "espeak-ng", "en-us", "{}", "", "", 1.0, f"phrase {i}") for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, np.full(22050, 0.1 * (i + 1), dtype=np.float32), 22050, {"model": "m", "voice": f"v{i}"})
    assert sum(p.stat().st_size for p in tmp_path.glob("*.wav")) <= cache.max_bytes
    assert cache.get(keys[0]) is None and not (tmp_path / f"{keys[0].digest}.json").exists()  # the oldest went
    samples, rate, meta = cache.get(keys[4])
    assert rate == 22050 and samples[0] == pytest.approx(0.5) and meta == {"model": "m", "voice": "v4"}
    (tmp_path / f"{keys[4].digest}.wav").write_bytes(b"not a wav")  # damaged: a miss, not a crash
    assert cache.get(keys[4]) is None


def test_a_phrase_cache_that_cannot_be_written_is_no_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache's folder should be")
    cache = PhraseCache(blocker / "phrases", max_bytes=10**6)
    key = PhraseKey("qwen-custom", "m", "v", "{}", "", "", 1.0, "Tests passed.")
    cache.put(key, np.zeros(100, dtype=np.float32), 24000, {})  # logged, not raised
    assert cache.get(key) is None
