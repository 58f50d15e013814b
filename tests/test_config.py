"""Settings from MCP_TTS_* variables: defaults, each variable, and bad values named in a clean message."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from mcp_tts.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.upper().startswith("MCP_TTS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


def test_defaults(tmp_path):
    settings = Settings.from_env()
    assert (settings.backend, settings.model, settings.voice, settings.output) == ("builtin", None, None, "auto")
    assert (settings.idle_timeout, settings.speaker_idle_timeout) == (600.0, 300.0)
    assert settings.max_text_chars == 5000 and isinstance(settings.max_text_chars, int)
    assert settings.phrase_cache_mb == 64.0 and settings.memory_gb is None
    assert settings.runtime_dir == tmp_path / "mcp-tts"
    assert settings.families_dir == settings.data_dir / "families"
    assert settings.voices_dir == settings.data_dir / "voices"
    assert settings.recordings_dir == settings.data_dir / "recordings"
    assert settings.log_level == "WARNING"


@pytest.mark.parametrize(("variable", "raw", "field", "value"), [
    ("MCP_TTS_BACKEND", "qwen", "backend", "qwen"),
    ("MCP_TTS_MODEL", "Qwen/Qwen3-TTS", "model", "Qwen/Qwen3-TTS"),
    ("MCP_TTS_MODEL", "", "model", None),
    ("MCP_TTS_VOICE", "af_heart", "voice", "af_heart"),
    ("MCP_TTS_VOICE", "", "voice", None),
    ("MCP_TTS_OUTPUT", "audio", "output", "audio"),
    ("MCP_TTS_DATA_DIR", "/srv/tts", "data_dir", Path("/srv/tts")),
    ("MCP_TTS_RUNTIME_DIR", "/srv/run", "runtime_dir", Path("/srv/run")),
    ("MCP_TTS_FAMILIES_DIR", "/big/families", "families_dir", Path("/big/families")),
    ("MCP_TTS_IDLE_TIMEOUT", "6", "idle_timeout", 6.0),
    ("MCP_TTS_SPEAKER_IDLE_TIMEOUT", "0.5", "speaker_idle_timeout", 0.5),
    ("MCP_TTS_MAX_TEXT_CHARS", "200000", "max_text_chars", 200000),
    ("MCP_TTS_MAX_TEXT_CHARS", "5000.7", "max_text_chars", 5000),
    ("MCP_TTS_MAX_TEXT_CHARS", "1e4", "max_text_chars", 10000),
    ("MCP_TTS_PHRASE_CACHE_MB", "0", "phrase_cache_mb", 0.0),
    ("MCP_TTS_MEMORY_GB", "1.5", "memory_gb", 1.5),
    ("MCP_TTS_MEMORY_GB", "", "memory_gb", None),
    ("MCP_TTS_TORCH_INDEX_URL", "", "torch_index_url", ""),
    ("MCP_TTS_TORCH_INDEX_URL", "https://example.org/simple", "torch_index_url", "https://example.org/simple"),
    ("MCP_TTS_LOG_LEVEL", "debug", "log_level", "DEBUG"),
])
def test_each_variable(monkeypatch, variable, raw, field, value):
    monkeypatch.setenv(variable, raw)
    assert getattr(Settings.from_env(), field) == value


def test_empty_dirs_fall_back_to_the_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("MCP_TTS_DATA_DIR", str(tmp_path / "data"))
    for variable in ("MCP_TTS_RUNTIME_DIR", "MCP_TTS_FAMILIES_DIR"):
        monkeypatch.setenv(variable, "")
    settings = Settings.from_env()
    assert settings.runtime_dir == tmp_path / "mcp-tts"
    assert settings.families_dir == tmp_path / "data" / "families"


def test_constructor_arguments_win_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MCP_TTS_DATA_DIR", "/elsewhere")
    settings = Settings(data_dir=tmp_path)
    assert settings.data_dir == tmp_path and settings.families_dir == tmp_path / "families"


@pytest.mark.parametrize(("variable", "raw", "message"), [
    ("MCP_TTS_IDLE_TIMEOUT", "x", "MCP_TTS_IDLE_TIMEOUT='x' is not a number: expected a number of seconds"),
    ("MCP_TTS_IDLE_TIMEOUT", "", "MCP_TTS_IDLE_TIMEOUT='' is not a number"),
    ("MCP_TTS_SPEAKER_IDLE_TIMEOUT", "5 min", "MCP_TTS_SPEAKER_IDLE_TIMEOUT='5 min' is not a number"),
    ("MCP_TTS_MAX_TEXT_CHARS", "lots", "MCP_TTS_MAX_TEXT_CHARS='lots' is not a number: expected a whole number"),
    ("MCP_TTS_MAX_TEXT_CHARS", "inf", "MCP_TTS_MAX_TEXT_CHARS='inf' is not a number"),
    ("MCP_TTS_MAX_TEXT_CHARS", "nan", "MCP_TTS_MAX_TEXT_CHARS='nan' is not a number"),
    ("MCP_TTS_PHRASE_CACHE_MB", "64MB", "MCP_TTS_PHRASE_CACHE_MB='64MB' is not a number: expected a number of"),
    ("MCP_TTS_MEMORY_GB", "lots", "MCP_TTS_MEMORY_GB='lots' is not a number: expected a number of gigabytes"),
    ("MCP_TTS_OUTPUT", "loud", "MCP_TTS_OUTPUT='loud' is not accepted: expected one of auto, play, file, audio"),
    ("MCP_TTS_OUTPUT", "", "MCP_TTS_OUTPUT='' is not accepted: expected one of auto, play, file, audio"),
    ("MCP_TTS_LOG_LEVEL", "chatty", "MCP_TTS_LOG_LEVEL='chatty' is not accepted: expected one of DEBUG, INFO,"),
])
def test_a_bad_value_is_named_with_what_is_accepted(monkeypatch, variable, raw, message):
    monkeypatch.setenv(variable, raw)
    with pytest.raises(SystemExit) as caught:
        Settings.from_env()
    text = str(caught.value.code)
    assert text.startswith(message)
    assert "Traceback" not in text and "pydantic" not in text and "\n" not in text


def test_every_bad_value_is_named_at_once(monkeypatch):
    monkeypatch.setenv("MCP_TTS_IDLE_TIMEOUT", "x")
    monkeypatch.setenv("MCP_TTS_OUTPUT", "loud")
    with pytest.raises(SystemExit) as caught:
        Settings.from_env()
    assert str(caught.value.code).splitlines() == [
        "MCP_TTS_OUTPUT='loud' is not accepted: expected one of auto, play, file, audio",
        "MCP_TTS_IDLE_TIMEOUT='x' is not a number: expected a number of seconds",
    ]


def test_the_server_side_reads_no_mcp_tts_variable_elsewhere():
    """One place: no module of the server side but config.py reads an MCP_TTS_* variable itself."""
    root = Path(__file__).resolve().parents[1] / "mcp_tts"
    reads = re.compile(r"environ(?:\.get)?\(?\[?[\"']MCP_TTS_|getenv\([\"']MCP_TTS_")
    offenders = [path.name for path in root.glob("*.py") if path.name != "config.py" and reads.search(path.read_text())]
    assert offenders == []


def test_the_engine_sides_variables_are_left_to_it_and_a_misspelt_argument_is_an_error(monkeypatch):
    monkeypatch.setenv("MCP_TTS_QWEN_FAST", "0")  # read by the qwen host, not here
    monkeypatch.setenv("MCP_TTS_PIECE_CHARS", "60")
    assert Settings.from_env().backend == "builtin"
    with pytest.raises(ValidationError, match="data_dri"):
        Settings(data_dri="/tmp")
