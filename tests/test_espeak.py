"""The espeak-ng binding against the real library from the espeakng-loader wheel: no mocks.

espeak-ng adds a little randomness to its waveform (seeded once per process), so audio is compared
by duration, energy and estimated fundamental frequency, never sample for sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

from mcp_tts.engines.builtin.espeak import Espeak, EspeakVoice, resolve_voice  # noqa: E402

ESPEAK = Espeak()
SENTENCE = "Hello there, this is a test of the speech engine."


def speak(text: str = SENTENCE, **options) -> tuple[np.ndarray, int]:
    chunks: list[np.ndarray] = []
    count = ESPEAK.synthesize(text, on_chunk=lambda chunk: chunks.append(chunk) or True, **options)
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), count


def seconds(audio: np.ndarray) -> float:
    return len(audio) / ESPEAK.sample_rate


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def fundamental_hz(audio: np.ndarray) -> float:
    """Median autocorrelation pitch over the loud, clearly periodic 40 ms frames."""
    rate = ESPEAK.sample_rate
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    signal = audio.astype(np.float64)
    frames = [signal[i:i + frame] - signal[i:i + frame].mean() for i in range(0, len(signal) - frame, hop)]
    loudest = max(float(np.sqrt(np.mean(f ** 2))) for f in frames)
    shortest, longest = int(rate / 400), int(rate / 60)
    pitches = []
    for f in frames:
        if np.sqrt(np.mean(f ** 2)) < 0.3 * loudest:
            continue
        corr = np.correlate(f, f, "full")[frame - 1:]
        corr /= corr[0]
        lag = shortest + int(np.argmax(corr[shortest:longest]))
        if corr[lag] > 0.5:
            pitches.append(rate / lag)
    assert len(pitches) > 10, "too few voiced frames to estimate a pitch"
    return float(np.median(pitches))


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          timeout=120, env={**os.environ, **env})


def test_sample_rate_is_what_espeak_reports():
    assert ESPEAK.sample_rate == 22050
    assert ESPEAK.initialised


def test_every_shipped_voice_is_listed():
    voices = ESPEAK.voices()
    assert len(voices) > 100
    assert all(isinstance(v, EspeakVoice) for v in voices)
    american = next(v for v in voices if v.identifier == "gmw/en-US")
    assert american.languages[0] == "en-us" and "en" in american.languages
    assert american.name == "English (America)"
    assert {v.gender for v in voices} <= {"male", "female", "unknown"}
    assert len({v.identifier for v in voices}) == len(voices)


def test_voice_list_is_cached_and_safe_to_modify():
    first = ESPEAK.voices()
    first.clear()
    assert ESPEAK.voices() == Espeak().voices()
    assert len(ESPEAK.voices()) > 100


def test_variants_are_listed_sorted():
    variants = ESPEAK.variants()
    assert {"f3", "m1", "klatt", "grandma", "robosoft"} <= set(variants)
    assert variants == sorted(variants)
    assert len(variants) > 50


@pytest.mark.parametrize("given, identifier", [
    ("en-us", "gmw/en-US"),
    ("EN-US", "gmw/en-US"),
    ("gmw/en-US", "gmw/en-US"),
    ("English (America)", "gmw/en-US"),
    ("english_(america)", "gmw/en-US"),
    ("en", "gmw/en"),
    ("en-gb", "gmw/en"),  # a language code espeak_SetVoiceByName itself rejects
    ("zh", "sit/cmn"),  # likewise
    ("de", "gmw/de"),
    ("fr", "roa/fr"),
    ("pt-br", "roa/pt-BR"),
    ("es-mx", "roa/es-419"),
    ("  Yue ", "sit/yue"),
])
def test_resolve_voice_accepts_codes_names_and_identifiers(given, identifier):
    assert resolve_voice(given) == identifier
    assert ESPEAK.resolve_voice(given) == identifier


@pytest.mark.parametrize("given", ["en-uss", "klingonese", "xx", "", "   ", "en-us+f3"])
def test_resolve_voice_rejects_unknown_names(given):
    with pytest.raises(ValueError, match="voice"):
        resolve_voice(given)


def test_sentence_gives_int16_audio_of_plausible_length_and_energy():
    audio, count = speak()
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert count == len(audio)
    assert 1.0 <= seconds(audio) <= 4.0
    assert rms(audio) > 500
    assert np.abs(audio).max() > 5000


def test_faster_rate_gives_shorter_audio():
    slow, _ = speak(rate=120)
    fast, _ = speak(rate=300)
    assert seconds(fast) < 0.7 * seconds(slow)


def test_pitch_raises_the_fundamental():
    low, _ = speak(pitch=10)
    high, _ = speak(pitch=90)
    assert fundamental_hz(high) > 1.3 * fundamental_hz(low)


def test_variant_changes_the_voice_either_way_of_naming_it():
    plain = fundamental_hz(speak()[0])
    assert fundamental_hz(speak(variant="f3")[0]) > 1.4 * plain
    assert fundamental_hz(speak(voice="en-us+f3")[0]) > 1.4 * plain
    assert fundamental_hz(speak(voice="de", variant="F3")[0]) > 1.4 * plain  # variants match any case


def test_returning_false_stops_synthesis_early():
    chunks = []

    def take_three(chunk):
        chunks.append(chunk)
        return len(chunks) < 3

    count = ESPEAK.synthesize(SENTENCE * 30, on_chunk=take_three)
    assert len(chunks) == 3
    assert count == sum(len(c) for c in chunks)
    assert count < 0.2 * ESPEAK.sample_rate


def test_synthesis_after_an_early_stop_is_complete():
    reference, _ = speak()
    ESPEAK.synthesize(SENTENCE * 30, on_chunk=lambda chunk: False)
    audio, _ = speak()
    assert abs(len(audio) - len(reference)) < 0.02 * len(reference)


def test_first_chunk_arrives_before_synthesis_ends():
    arrivals = []
    started = time.perf_counter()
    count = ESPEAK.synthesize(SENTENCE * 5,
                              on_chunk=lambda chunk: arrivals.append((time.perf_counter(), len(chunk))) or True)
    finished = time.perf_counter()
    assert len(arrivals) > 10  # streamed in many pieces, not one buffer at the end
    first_at, first_len = arrivals[0]
    assert started < first_at < arrivals[-1][0] <= finished
    assert first_len < 0.1 * ESPEAK.sample_rate  # a small first buffer: the first audio is early
    assert count == sum(n for _, n in arrivals)


@pytest.mark.parametrize("text, voice, ascii_twin", [
    ("Grüße aus Köln", "de", "Grüsse aus Koeln"),
    ("naïve café", "en-us", "naive cafe"),
    ("Ça va très bien", "fr", "Ca va tres bien"),
])
def test_utf8_text_is_read_as_letters_not_bytes(text, voice, ascii_twin):
    # Read as Latin-1 bytes, each accented letter would become two symbols spoken by name.
    audio, _ = speak(text, voice=voice)
    twin, _ = speak(ascii_twin, voice=voice)
    assert abs(seconds(audio) - seconds(twin)) < 0.25 * seconds(twin)


def test_chinese_text_is_spoken():
    audio, count = speak("你好，世界。今天天气很好。", voice="zh")
    assert count == len(audio)
    assert seconds(audio) > 1.0
    assert rms(audio) > 500


def test_empty_text_gives_no_audio():
    calls = []
    assert ESPEAK.synthesize("", on_chunk=calls.append) == 0
    assert ESPEAK.synthesize(" \n\t", on_chunk=calls.append) == 0
    assert calls == []


def test_control_characters_cannot_issue_espeak_commands():
    # "\x01" starts an espeak embedded command: "\x0180S" would drop the rate to 80 wpm.
    plain, _ = speak("80S " + SENTENCE)
    smuggled, _ = speak("\x0180S " + SENTENCE)
    assert abs(seconds(smuggled) - seconds(plain)) < 0.05 * seconds(plain)


def test_nul_does_not_cut_the_text_short():
    whole, _ = speak(SENTENCE)
    with_nul, _ = speak(SENTENCE.replace(",", ",\x00"))
    assert abs(seconds(with_nul) - seconds(whole)) < 0.05 * seconds(whole)


def test_unknown_voice_names_it_and_suggests_close_matches():
    with pytest.raises(ValueError) as error:
        ESPEAK.synthesize("hi", voice="en-uss", on_chunk=lambda chunk: True)
    assert "'en-uss'" in str(error.value)
    assert "'en-US'" in str(error.value)


def test_unknown_variant_names_it_and_suggests_close_matches():
    for call in (dict(variant="f9"), dict(voice="en-us+f9")):
        with pytest.raises(ValueError) as error:
            ESPEAK.synthesize("hi", on_chunk=lambda chunk: True, **call)
        assert "'f9'" in str(error.value) and "'f3'" in str(error.value)


def test_variant_given_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        ESPEAK.synthesize("hi", voice="en-us+f3", variant="m3", on_chunk=lambda chunk: True)


@pytest.mark.parametrize("option, value, accepted", [
    ("rate", 79, "80..450"),
    ("rate", 451, "80..450"),
    ("pitch", -1, "0..100"),
    ("pitch", 101, "0..100"),
    ("pitch_range", 101, "0..100"),
    ("volume", 201, "0..200"),
])
def test_out_of_range_parameters_name_the_accepted_range(option, value, accepted):
    with pytest.raises(ValueError, match=accepted) as error:
        ESPEAK.synthesize("hi", on_chunk=lambda chunk: True, **{option: value})
    assert option in str(error.value)


@pytest.mark.parametrize("option, value", [("rate", 175.5), ("pitch", "50"), ("pitch_range", True)])
def test_non_integer_parameters_are_refused(option, value):
    with pytest.raises(TypeError, match=option):
        ESPEAK.synthesize("hi", on_chunk=lambda chunk: True, **{option: value})


def test_every_listed_voice_is_accepted():
    for voice in ESPEAK.voices():
        assert ESPEAK.synthesize("a", voice=voice.identifier, on_chunk=lambda chunk: True) > 0, voice


def test_every_variant_is_accepted():
    for variant in ESPEAK.variants():
        assert ESPEAK.synthesize("a", variant=variant, on_chunk=lambda chunk: True) > 0, variant


def test_an_error_in_on_chunk_propagates_and_releases_the_lock():
    def explode(chunk):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ESPEAK.synthesize(SENTENCE, on_chunk=explode)
    audio, _ = speak()
    assert 1.0 <= seconds(audio) <= 4.0


def test_synthesizing_from_inside_on_chunk_is_refused_not_deadlocked():
    def nest(chunk):
        ESPEAK.synthesize("again", on_chunk=lambda inner: True)
        return True

    with pytest.raises(RuntimeError, match="inside on_chunk"):
        ESPEAK.synthesize(SENTENCE, on_chunk=nest)


def test_queries_work_from_inside_on_chunk():
    seen = []

    def ask(chunk):
        seen.append((ESPEAK.sample_rate, len(ESPEAK.voices()), len(ESPEAK.variants()), resolve_voice("de")))
        return False

    ESPEAK.synthesize(SENTENCE, on_chunk=ask)
    assert seen == [(22050, len(ESPEAK.voices()), len(ESPEAK.variants()), "gmw/de")]


def test_two_threads_at_once_each_get_their_own_complete_audio():
    jobs = {"low": dict(text=SENTENCE, voice="en-us", pitch=10),
            "high": dict(text="Guten Tag, wie geht es Ihnen heute?", voice="de", pitch=90)}
    references = {name: speak(job["text"], voice=job["voice"], pitch=job["pitch"])[0] for name, job in jobs.items()}
    order: list[tuple[str, int]] = []  # (job, round) per chunk, as delivered
    results: dict[tuple[str, int], np.ndarray] = {}
    barrier = threading.Barrier(len(jobs))

    def worker(name):
        barrier.wait()
        for round_ in range(4):
            chunks = []

            def collect(chunk, key=(name, round_)):
                order.append(key)
                chunks.append(chunk)
                return True

            job = jobs[name]
            ESPEAK.synthesize(job["text"], voice=job["voice"], pitch=job["pitch"], on_chunk=collect)
            results[(name, round_)] = np.concatenate(chunks)

    threads = [threading.Thread(target=worker, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8
    # Each synthesis delivered its chunks in one unbroken run: the lock held the other thread off.
    runs = [key for i, key in enumerate(order) if i == 0 or order[i - 1] != key]
    assert len(runs) == len(set(runs)) == 8
    for (name, _), audio in results.items():
        reference = references[name]
        assert abs(len(audio) - len(reference)) < 0.02 * len(reference)
    assert fundamental_hz(results[("high", 0)]) > 1.3 * fundamental_hz(results[("low", 0)])


def test_importing_loads_nothing_and_needs_nothing_from_the_server():
    result = run_python("""
        import sys
        import mcp_tts.engines.builtin.espeak as espeak
        assert not espeak.Espeak().initialised
        assert "espeakng_loader" not in sys.modules
        espeak.Espeak().voices()
        assert espeak.Espeak().initialised
        server = [m for m in sys.modules if m.startswith("mcp_tts.") and not m.startswith("mcp_tts.engines")]
        assert server in ([], ["mcp_tts.version"]), server
        assert "mcp" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr.decode()


def test_nothing_is_written_to_stdout():
    # The engine process's stdout may carry a protocol: neither Python nor espeak may print there.
    result = run_python("""
        from mcp_tts.engines.builtin.espeak import Espeak
        e = Espeak()
        e.voices(); e.variants()
        for text, voice in [("Hello, world.", "en-us"), ("你好", "zh"), ("こんにちは", "ja"),
                            ("\\x01\\x02 odd <b>&amp; text</b> \\ud800 \\U0001F916", "en"),
                            ("Grüße", "de+klatt")]:
            e.synthesize(text, voice=voice, on_chunk=lambda chunk: True)
        for bad in ("nope", "en-us+nope"):
            try:
                e.synthesize("x", voice=bad, on_chunk=lambda chunk: True)
            except ValueError:
                pass
    """)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""
