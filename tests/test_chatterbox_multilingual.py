"""chatterbox-multilingual end to end: the package's ChatterboxMultilingualTTS loaded by hub id through its own
from_pretrained, offline, from a random-weight checkpoint in the published layout (tests/checkpoints/chatterbox.py,
linked into the ResembleAI/chatterbox snapshot beside the standard model's files), driven through the MCP tools.

Every generation stops by itself after 24 to 27 speech tokens (the checkpoint's stop edit, made to pass the
package's hallucination guard), so one piece is about a second of audio, whatever the language.
"""

from __future__ import annotations

import re

import pytest

from mcp_tts.engines.chatterbox.engine import _language
from mcp_tts.engines.contract.catalog import BACKENDS, CHATTERBOX_LANGUAGES
from mcp_tts.engines.runtime.synthesis import RequestError
from tests.support.families import chatterbox_env
from tests.support.mcp_client import error_text, mcp_session
from tests.test_chatterbox import host_log, spoken, voice_wav

pytestmark = pytest.mark.anyio

MULTILINGUAL, REPO_ID = "chatterbox-multilingual", "ResembleAI/chatterbox"
SECONDS = (0.4, 1.5)  # 24-27 speech tokens, less any the guard ends early or outside the S3 vocabulary


def test_the_catalog_lists_the_packages_23_languages():
    spec = BACKENDS[MULTILINGUAL]
    assert len(spec.languages) == 23 and spec.languages == tuple(CHATTERBOX_LANGUAGES)
    assert {"ar", "de", "hi", "ja", "ko", "sw", "zh"} <= set(spec.languages) and spec.family == "chatterbox"
    assert spec.models == (REPO_ID,) and spec.capabilities.clone and spec.capabilities.expression


def test_language_is_a_code_a_name_or_a_regional_tag_and_english_by_default():
    notes: list[str] = []
    assert [_language(MULTILINGUAL, code, notes) for code in (None, "de", "JA", "Japanese", "pt-BR", "zh_TW")] == [
        "en", "de", "ja", "ja", "pt", "zh"]
    assert notes == []
    assert _language(MULTILINGUAL, "auto", notes) == "en" and "does not detect the language" in notes[0]
    for bad in ("xx", "klingon", "", "x-de"):
        with pytest.raises(RequestError) as raised:
            _language(MULTILINGUAL, bad or " ", [])
        assert raised.value.code == "bad_request" and "ar (Arabic)" in str(raised.value)
    # the package reads Hebrew and Russian through optional packages the family venv does not have
    hebrew: list[str] = []
    assert _language(MULTILINGUAL, "he", hebrew) == "he"
    assert len(hebrew) <= 1 and all("dicta_onnx" in n and "diacritics" in n for n in hebrew)
    assert _language("chatterbox", "en", []) is None and _language("chatterbox-turbo", None, []) is None
    with pytest.raises(RequestError, match="English only.*chatterbox-multilingual"):
        _language("chatterbox", "de", [])


# two pieces through upstream's multilingual loop (eager attention for its guard) and S3Gen: minutes on 2 CPU cores
@pytest.mark.timeout(1500)
async def test_multilingual_by_hub_id_speaks_the_language_given_per_call(shared_home, chatterbox_hub, tmp_path):
    env = chatterbox_env(shared_home, None, chatterbox_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_ALLOWED_DIRS=str(tmp_path))
    recording = voice_wav(tmp_path / "me.wav", 6.5, seed=4)
    async with mcp_session(env) as session:
        switched = await session.call_tool("switch_backend", {"backend": MULTILINGUAL})
        listed = (await session.call_tool("list_voices", {"backend": MULTILINGUAL})).structured_content
        german = await session.call_tool("say", {"text": "Guten Morgen, der Build ist grün.", "language": "German",
                                                 "cfg_weight": 0.0})
        unknown = await session.call_tool("say", {"text": "Hallo.", "language": "xx"})
        added = await session.call_tool("add_voice", {"name": "me", "audio_path": str(recording),
                                                      "transcript": "My own voice."})
        assert not added.is_error, added.content
        chinese = await session.call_tool("say", {"text": "你好，我是中文。", "language": "zh", "voice": "me",
                                                  "backend": MULTILINGUAL})
        english_only = await session.call_tool("say", {"text": "Hallo.", "language": "de", "backend": "chatterbox"})
    assert not switched.is_error, switched.content
    assert switched.structured_content["model"] == REPO_ID  # the package's from_pretrained, offline
    entry = listed["backends"][0]
    assert entry["supports"]["language"] == list(CHATTERBOX_LANGUAGES) and entry["supports"]["clone"] is True
    assert entry["supports"]["params"]["cfg_weight"]["min"] == 0.0
    for result in (german, chinese):
        assert SECONDS[0] <= len(spoken(result)) / 24000 <= SECONDS[1]
        assert result.structured_content["backend"] == MULTILINGUAL and result.structured_content["model"] == REPO_ID
    log = host_log(shared_home)
    said = re.findall(r"chatterbox-multilingual/(\w+) \(([^)]*)\)", log)
    languages = [re.search(r"language (\w+)", settings).group(1) for _, settings in said]
    assert languages == ["de", "zh"]  # a name resolved to its code
    assert "cfg_weight 0.0" in said[0][1] and said[1][0] == "me"  # guidance 0; a saved voice cloned
    assert german.structured_content["notes"] == []
    # the checkpoint's Cangjie table was read (the package looks elsewhere); pkuseg's model needs a download
    assert chinese.structured_content["notes"] == [
        "Chinese is read without word segmentation: pkuseg's model is not available (it is fetched once, with "
        "network)"]
    message = error_text(unknown)
    assert "does not speak 'xx'" in message and "de (German)" in message and "zh (Chinese)" in message
    assert chinese.structured_content["voice"] == "me"
    assert "English only" in error_text(english_only) and MULTILINGUAL in error_text(english_only)
    assert "Traceback" not in log
