"""check_text: what an agent may ask to speak, and errors that say what was wrong."""

from __future__ import annotations

import pytest

from mcp_tts.errors import TTSError
from mcp_tts.text import check_text

LIMIT = 10


@pytest.mark.parametrize("text, limit, spoken", [
    ("hello", LIMIT, "hello"),
    ("héllo wörld", 100, "héllo wörld"),
    ("日本語のテキスト", LIMIT, "日本語のテキスト"),
    ("hi 😀 👩‍💻 🇫🇷", 100, "hi 😀 👩‍💻 🇫🇷"),  # the joiner U+200D is a format character, not a control
    ("a\tb\nc\r\nd", LIMIT, "a\tb\nc\r\nd"),
    ("x" * LIMIT, LIMIT, "x" * LIMIT),
    ("😀" * LIMIT, LIMIT, "😀" * LIMIT),  # the limit counts characters, not bytes
    ("  \n" + "x" * LIMIT + "\t\r\n ", LIMIT, "x" * LIMIT),  # surrounding whitespace is not counted
    ("\x0bhi\x0c", LIMIT, "hi"),  # whitespace controls at the edges are stripped, never spoken
    ("\x1chi\x1f\x85", LIMIT, "hi"),
], ids=repr)
def test_accepted_texts_come_back_stripped(text, limit, spoken):
    assert check_text(text, limit) == spoken


@pytest.mark.parametrize("text", ["", " ", "\n\t \r\n", "\u3000\u00a0", "\x1c\x1d\x1e\x1f"], ids=repr)
def test_empty_or_whitespace_only_is_refused(text):
    with pytest.raises(TTSError, match="empty or only whitespace"):
        check_text(text, LIMIT)


@pytest.mark.parametrize("text", [None, b"hello", 5, ["hello"]], ids=repr)
def test_a_text_that_is_not_a_string_is_refused(text):
    with pytest.raises(TTSError, match="must be a string"):
        check_text(text, LIMIT)


@pytest.mark.parametrize("text", ["x" * (LIMIT + 1), "😀" * (LIMIT + 1), " " + "x" * (LIMIT + 1) + " "])
def test_one_over_the_limit_names_the_length_and_the_limit(text):
    with pytest.raises(TTSError) as caught:
        check_text(text, LIMIT)
    message = str(caught.value)
    assert f"is {LIMIT + 1} characters" in message
    assert f"at most {LIMIT}" in message
    assert "MCP_TTS_MAX_TEXT_CHARS" in message


REFUSED = ([chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]
           + ["\x7f", "\x85", "\x9b", "\ud800", "\udfff"])


@pytest.mark.parametrize("char", REFUSED, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_and_lone_surrogates_are_refused_by_code_point_and_position(char):
    with pytest.raises(TTSError) as caught:
        check_text(f"ab{char}cd", 100)
    message = str(caught.value)
    assert f"U+{ord(char):04X}" in message
    assert "at position 2" in message
    assert "newlines and tabs are accepted" in message


def test_the_first_refused_character_is_the_one_named():
    with pytest.raises(TTSError, match=r"U\+001B at position 4;"):
        check_text("red \x1b[31m \x07", 100)


def test_a_control_character_at_the_start_is_refused():
    with pytest.raises(TTSError, match=r"U\+0007 at position 0;"):
        check_text("\x07ding", 100)


def test_the_position_named_is_in_the_text_as_sent():
    with pytest.raises(TTSError, match=r"U\+0007 at position 3;"):
        check_text("  a\x07b", 100)
