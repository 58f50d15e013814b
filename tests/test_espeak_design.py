"""Rule-based voice design: descriptions become espeak parameters the real library accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

from mcp_tts.engines.builtin import design as espeak_design  # noqa: E402
from mcp_tts.engines.builtin.design import DEFAULT_VOICE, DesignedParams, design_params  # noqa: E402
from mcp_tts.engines.builtin.espeak import Espeak  # noqa: E402

ESPEAK = Espeak()
BASE = design_params("a voice")  # nothing understood: espeak's defaults

# description, voice, variant, then the direction of rate, pitch and pitch range from the default
CASES = [
    ("a calm elderly British woman", "gmw/en", "grandma", -1, -1, -1),
    ("fast, high-pitched robot", DEFAULT_VOICE, "robosoft", +1, +1, -1),
    ("Deep-voiced old man with a Scottish accent, very slow", "gmw/en-GB-scotland", "grandpa", -1, -1, 0),
    ("a little girl", DEFAULT_VOICE, "f5", +1, +1, +1),
    ("young boy", DEFAULT_VOICE, "m3", +1, +1, +1),
    ("a woman", DEFAULT_VOICE, "f3", 0, 0, 0),
    ("man", DEFAULT_VOICE, "m3", 0, 0, 0),
    ("a guy from New York", "gmw/en-US-nyc", "m3", 0, 0, 0),
    ("lady with a posh English accent", "gmw/en-GB-x-rp", "f3", 0, 0, 0),
    ("monotone, flat male narrator", DEFAULT_VOICE, "m3", 0, 0, -1),
    ("lively, expressive and energetic", DEFAULT_VOICE, None, +1, +1, +1),
    ("quick American", "gmw/en-US", None, +1, 0, 0),
    ("middle-aged German man", "gmw/de", "m3", -1, -1, 0),
    ("squeaky French girl", "roa/fr", "f5", +1, +1, +1),
    ("slow Spanish speaker", "roa/es", None, -1, 0, 0),
    ("Mexican woman", "roa/es-419", "f3", 0, 0, 0),
    ("Italian grandmother", "roa/it", "grandma", -1, -1, 0),
    ("Brazilian Portuguese, cheerful", "roa/pt-BR", None, +1, +1, +1),
    ("Portuguese from Portugal", "roa/pt", None, 0, 0, 0),
    ("a sad Russian man", "zle/ru", "m3", -1, -1, -1),
    ("Japanese woman", "jpx/ja", "f3", 0, 0, 0),
    ("calm Mandarin Chinese teacher", "sit/cmn", None, -1, 0, -1),
    ("Cantonese", "sit/yue", None, 0, 0, 0),
    ("Korean guy", "ko", "m3", 0, 0, 0),
    ("Dutch", "gmw/nl", None, 0, 0, 0),
    ("a Polish elderly gentleman", "zlw/pl", "grandpa", -1, -1, 0),
    ("Irish", "gmw/en", None, 0, 0, 0),
    ("Indian accent", "inc/hi", None, 0, 0, 0),
    ("robotic female computer", DEFAULT_VOICE, "anikaRobot", 0, 0, -1),
    ("retro Klatt synthesizer", DEFAULT_VOICE, "klatt", 0, 0, 0),
    ("old school speech synth", DEFAULT_VOICE, "klatt", 0, 0, 0),
    ("not too fast, a Welsh woman", "cel/cy", "f3", 0, 0, 0),
]


def direction(value: int, base: int) -> int:
    return (value > base) - (value < base)


@pytest.mark.parametrize("description, voice, variant, rate, pitch, pitch_range", CASES)
def test_descriptions_map_onto_parameters(description, voice, variant, rate, pitch, pitch_range):
    got = design_params(description)
    assert isinstance(got, DesignedParams)
    assert (got.voice, got.variant) == (voice, variant), got.notes
    assert direction(got.rate, BASE.rate) == rate, got.notes
    assert direction(got.pitch, BASE.pitch) == pitch, got.notes
    assert direction(got.pitch_range, BASE.pitch_range) == pitch_range, got.notes


def test_the_base_is_espeaks_default():
    assert (BASE.voice, BASE.variant, BASE.rate, BASE.pitch, BASE.pitch_range) == (DEFAULT_VOICE, None, 175, 50, 50)


@pytest.mark.parametrize("description", [c[0] for c in CASES])
def test_every_designed_voice_is_accepted_by_espeak(description):
    got = design_params(description)
    assert got.voice in {v.identifier for v in ESPEAK.voices()}
    assert got.variant is None or got.variant in ESPEAK.variants()
    samples = ESPEAK.synthesize("Testing one two.", voice=got.voice, variant=got.variant, rate=got.rate,
                                pitch=got.pitch, pitch_range=got.pitch_range, on_chunk=lambda chunk: True)
    assert samples > 0


def test_every_accent_word_names_a_shipped_voice():
    shipped = {v.identifier for v in ESPEAK.voices()}
    for word in espeak_design._ACCENTS:
        got = design_params(word)
        assert got.voice in shipped, (word, got.voice)
        assert any(f"'{word}' -> voice {got.voice}" in note for note in got.notes), (word, got.notes)


def test_every_variant_the_rules_can_pick_is_shipped():
    variants = set(ESPEAK.variants())
    for gender in (None, "female", "male"):
        for age in (None, "child", "young", "middle-aged", "old"):
            for style in (None, "robot", "klatt"):
                variant, why, _ = espeak_design._variant(gender, age, style)
                assert variant is None or variant in variants, (gender, age, style)


def test_same_description_always_gives_the_same_result():
    for description, *_ in CASES:
        assert design_params(description) == design_params(description)


def test_results_do_not_depend_on_hash_seed():
    code = ("import sys; from mcp_tts.engines.builtin.design import design_params; "
            f"print([design_params(d) for d in {[c[0] for c in CASES]!r}])")
    outputs = {
        subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, check=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1


@pytest.mark.parametrize("description", ["", "   ", "\n\t "])
def test_empty_description_is_rejected_with_an_example(description):
    with pytest.raises(ValueError, match="empty") as error:
        design_params(description)
    assert "e.g." in str(error.value)


def test_non_text_description_is_rejected():
    with pytest.raises(TypeError):
        design_params(None)  # type: ignore[arg-type]


def test_notes_explain_each_choice():
    got = design_params("a slow, deep-voiced woman")
    notes = "\n".join(got.notes)
    assert "'slow' -> slower: rate -35 wpm" in notes
    assert "'deep' -> deeper: pitch -25" in notes
    assert "'woman' -> variant f3" in notes
    assert f"voice {DEFAULT_VOICE}" in notes


def test_words_not_understood_are_reported():
    got = design_params("a purple wizard who whispers")
    assert got.notes[-1] == "not understood: 'purple', 'wizard', 'whispers'"
    assert (got.voice, got.variant, got.rate) == (DEFAULT_VOICE, None, 175)


def test_intensifiers_scale_the_change():
    slow = design_params("slow").rate
    assert design_params("very slow").rate < slow < design_params("a bit slow").rate < BASE.rate


def test_negated_words_change_nothing():
    got = design_params("not fast, not robotic")
    assert (got.rate, got.variant) == (BASE.rate, None)
    assert any("'not fast' -> ignored" in note for note in got.notes)


def test_negation_does_not_leak_past_the_phrase():
    assert design_params("no accent, a woman").variant == "f3"


def test_first_accent_wins_and_the_rest_are_reported():
    got = design_params("French, or maybe Italian")
    assert got.voice == "roa/fr"
    assert any("'italian' ignored" in note for note in got.notes)


def test_a_more_specific_accent_refines_its_language():
    assert design_params("Portuguese, Brazilian").voice == "roa/pt-BR"
    assert design_params("British, Scottish").voice == "gmw/en-GB-scotland"
    assert design_params("Scottish English").voice == "gmw/en-GB-scotland"


def test_conflicting_genders_keep_the_first():
    got = design_params("a man or a woman")
    assert got.variant == "m3"
    assert any("'woman' as gender ignored" in note for note in got.notes)


@pytest.mark.parametrize("description", [
    "extremely extremely fast fast rapid hurried squeaky squeaky shrill high lively dramatic",
    "extremely slow slow sleepy leisurely deep deep bass monotone flat monotone",
])
def test_extremes_are_clamped_to_what_espeak_accepts(description):
    got = design_params(description)
    assert 80 <= got.rate <= 450 and 0 <= got.pitch <= 100 and 0 <= got.pitch_range <= 100
    assert any("outside espeak's" in note for note in got.notes)
    ESPEAK.synthesize("ok", voice=got.voice, variant=got.variant, rate=got.rate, pitch=got.pitch,
                      pitch_range=got.pitch_range, on_chunk=lambda chunk: True)


def test_hostile_descriptions_give_valid_parameters_quickly():
    started = time.perf_counter()
    for description in ["🤖🤖🤖", "!!!???", "\x00\x01 woman \x1b[31m", "fast " * 20000,
                        "Ünïcödé stürmisch woman", "'; DROP TABLE voices; --", "a" * 100000]:
        got = design_params(description)
        assert 80 <= got.rate <= 450 and 0 <= got.pitch <= 100 and 0 <= got.pitch_range <= 100
        assert got.voice in {v.identifier for v in ESPEAK.voices()}
    assert time.perf_counter() - started < 30  # generous: catches only runaway (quadratic) parsing


def test_unknown_word_list_does_not_repeat():
    got = design_params("blue blue blue")
    assert got.notes[-1] == "not understood: 'blue'"


def test_the_design_module_does_not_load_the_library():
    code = ("import sys; import mcp_tts.engines.builtin.design as d; d.design_params('a woman'); "
            "assert 'ctypes' not in sys.modules and 'mcp_tts.engines.builtin.espeak' not in sys.modules, "
            "sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
