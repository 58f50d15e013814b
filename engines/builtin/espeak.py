"""ctypes binding to libespeak-ng as shipped by the espeakng-loader wheel.

Runs in the engine process: imports only the standard library, numpy and espeakng_loader, and
never writes to stdout. (libespeak-ng itself has one printf to stdout, reached only with a corrupt
phoneme table; a process whose stdout carries a protocol should keep fd 1 away from C code.)
espeak-ng keeps all of its state in globals, so the whole process shares one initialisation and
one lock; `Espeak` objects are cheap handles onto that shared library.
"""

from __future__ import annotations

import ctypes
import difflib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Espeak",
    "EspeakVoice",
    "resolve_voice",
    "RATE_RANGE",
    "PITCH_RANGE",
    "PITCH_RANGE_RANGE",
    "VOLUME_RANGE",
]

# Accepted parameter ranges (inclusive). espeak clamps silently; we refuse instead, so a caller
# learns that its value was not used.
RATE_RANGE = (80, 450)  # words per minute
PITCH_RANGE = (0, 100)
PITCH_RANGE_RANGE = (0, 100)
VOLUME_RANGE = (0, 200)

_BUFFER_MS = 50  # espeak hands us audio every ~50 ms of speech: the first chunk comes early

# espeak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_GENDERS = {1: "male", 2: "female"}

# C0 controls other than tab/newline/carriage return: 0x01 starts an espeak embedded command
# (e.g. "\x0180S" changes the speed mid-text), NUL would end the text early.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class EspeakVoice:
    name: str
    identifier: str  # path under espeak-ng-data/voices, e.g. "gmw/en-US"; what resolve_voice returns
    languages: tuple[str, ...]  # in espeak's order, e.g. ("en-us", "en")
    gender: str  # "male" / "female" / "unknown"
    age: int  # 0 when the voice file does not say


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code)* then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Sink:
    """Where the running synthesis sends its chunks; one at a time, guarded by _LOCK."""

    def __init__(self, on_chunk: Callable[[np.ndarray], bool]) -> None:
        self.on_chunk = on_chunk
        self.samples = 0
        self.stopped = False
        self.error: BaseException | None = None


class _Library:
    """The loaded, initialised libespeak-ng: exactly one per process."""

    def __init__(self) -> None:
        import espeakng_loader  # lazily, so importing this module stays cheap

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int

        # espeak wants the directory that contains espeak-ng-data, not espeak-ng-data itself.
        data_dir = espeakng_loader.get_data_path()
        home = os.path.dirname(os.path.abspath(data_dir))
        if not os.path.isdir(os.path.join(home, "espeak-ng-data")):
            raise RuntimeError(f"espeakng-loader's data is not where expected: {data_dir!r}; "
                               "reinstall it with `pip install --force-reinstall espeakng-loader`")
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, os.fsencode(home),
                                     _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate}) with data in {home!r}")
        self.lib = lib
        self.sample_rate = rate
        self.voices_dir = os.path.join(data_dir, "voices")
        self.sink: _Sink | None = None
        self.callback = _SynthCallback(self._on_audio)  # held here: ctypes would free it otherwise
        lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav, numsamples, events) -> int:
        """Called by espeak from inside espeak_Synth, on the synthesizing thread; 1 aborts."""
        sink = self.sink
        if sink is None or sink.stopped:
            return 1
        if not wav or numsamples <= 0:  # the end-of-message call carries events only
            return 0
        chunk = np.ctypeslib.as_array(wav, shape=(numsamples,)).astype(np.int16, copy=True)  # espeak reuses it
        sink.samples += numsamples
        try:
            keep_going = sink.on_chunk(chunk)
        except BaseException as exc:  # raised again after espeak_Synth returns
            sink.error = exc
            keep_going = False
        if keep_going is False:
            sink.stopped = True
            return 1
        return 0


_LOCK = threading.Lock()  # serialises every call into libespeak-ng in this process
_lock_owner: int | None = None
_library: _Library | None = None
_voices: list[EspeakVoice] | None = None
_variants: list[str] | None = None
_voice_index: dict[str, tuple[str, str]] | None = None


def _loaded() -> _Library:
    """The process-wide library, initialised on first use; call without _LOCK held."""
    global _library
    if _library is None:
        with _LOCK:
            if _library is None:
                _library = _Library()
    return _library


def _read_languages(address: int | None) -> list[tuple[int, str]]:
    """(priority, code) pairs from espeak's packed list: priority byte, code, NUL; a 0 byte ends it."""
    pairs = []
    offset = 0
    while address and (priority := ctypes.string_at(address + offset, 1)[0]) != 0:
        code = ctypes.string_at(address + offset + 1)
        pairs.append((priority, code.decode("utf-8", "replace")))
        offset += len(code) + 2
    return pairs


def _normalise(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").split())


def _list_voices(lib: ctypes.CDLL) -> tuple[list[EspeakVoice], dict[str, tuple[str, str]]]:
    """Every voice, and an index from each accepted spelling to its identifier; call with _LOCK held."""
    array = lib.espeak_ListVoices(None)
    voices: list[EspeakVoice] = []
    by_language: dict[str, tuple[int, bool, int]] = {}  # code -> (priority, not own code, list position)
    index: dict[str, tuple[str, str]] = {}  # normalised spelling -> (identifier, spelling as shipped)
    i = 0
    while array[i]:
        raw = array[i].contents
        identifier = raw.identifier.decode("utf-8", "replace")
        languages = _read_languages(raw.languages)
        voice = EspeakVoice(
            name=(raw.name or b"").decode("utf-8", "replace").strip(),
            identifier=identifier,
            languages=tuple(code for _, code in languages),
            gender=_GENDERS.get(raw.gender, "unknown"),
            age=raw.age,
        )
        voices.append(voice)
        for priority, code in languages:
            # espeak's lower number is the better match; a voice named after the code wins a tie.
            code = code.lower()
            rank = (priority, code != identifier.rsplit("/", 1)[-1].lower(), i)
            if code not in by_language or rank < by_language[code]:
                by_language[code] = rank
        i += 1
    # Later entries win: language codes < names < file names < full identifiers.
    spellings = [(code, voices[rank[2]].identifier) for code, rank in by_language.items()]
    for field in (lambda v: v.name, lambda v: v.identifier.rsplit("/", 1)[-1], lambda v: v.identifier):
        spellings += [(field(v), v.identifier) for v in reversed(voices)]  # the first voice wins a clash
    for spelling, identifier in spellings:
        index[_normalise(spelling)] = (identifier, spelling)
    return voices, index


def _ensure_voices() -> None:
    global _voices, _voice_index
    if _voices is None:
        lib = _loaded().lib
        with _LOCK:
            if _voices is None:
                _voices, _voice_index = _list_voices(lib)


def _range_check(what: str, value: int, accepted: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer in {accepted[0]}..{accepted[1]}, not {value!r}")
    if not accepted[0] <= value <= accepted[1]:
        raise ValueError(f"{what} {value} is out of range; espeak accepts {accepted[0]}..{accepted[1]}")
    return int(value)


def _hint(close: list[str], examples: list[str]) -> str:
    return ("close matches: " if close else "for example: ") + ", ".join(repr(c) for c in close or examples)


class Espeak:
    """A handle onto the process's one libespeak-ng; the library loads on first use."""

    @property
    def initialised(self) -> bool:
        return _library is not None

    @property
    def sample_rate(self) -> int:
        return _loaded().sample_rate

    def voices(self) -> list[EspeakVoice]:
        """Every voice the data ships (variants excluded), in espeak's order."""
        _ensure_voices()
        return list(_voices)

    def variants(self) -> list[str]:
        """Voice variants (espeak-ng-data/voices/!v), appended to a voice as `voice+variant`."""
        global _variants
        if _variants is None:
            directory = os.path.join(_loaded().voices_dir, "!v")
            _variants = sorted(entry.name for entry in os.scandir(directory) if entry.is_file())
        return list(_variants)

    def resolve_voice(self, name: str) -> str:
        """The identifier for a voice identifier, file name, voice name or language code.

        espeak_SetVoiceByName alone rejects language codes such as "zh" or "en-gb", so we resolve
        against the voice list ourselves, which also lets an error suggest close matches.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("voice must be a non-empty string such as 'en-us', 'de' or 'gmw/en-US'")
        _ensure_voices()
        key = _normalise(name)
        if key in _voice_index:
            return _voice_index[key][0]
        close = difflib.get_close_matches(key, list(_voice_index), n=5, cutoff=0.6)
        hint = _hint([_voice_index[k][1] for k in close], ["en-us", "en", "de", "fr", "es", "zh", "ja"])
        raise ValueError(f"unknown espeak voice {name!r}; {hint} "
                         "(a language code, voice name or identifier)")

    def resolve_variant(self, variant: str) -> str:
        """The variant's file name; checked here because espeak silently ignores unknown ones."""
        variants = self.variants()
        by_lower = {v.lower(): v for v in variants}
        if isinstance(variant, str) and variant.strip().lower() in by_lower:
            return by_lower[variant.strip().lower()]
        close = difflib.get_close_matches(str(variant).strip().lower(), list(by_lower), n=5, cutoff=0.5)
        hint = _hint([by_lower[c] for c in close], ["f3", "m3", "klatt", "grandma", "robosoft"])
        raise ValueError(f"unknown espeak variant {variant!r}; {hint} (all {len(variants)}: see list_voices)")

    def synthesize(
        self,
        text: str,
        *,
        voice: str = "en-us",
        variant: str | None = None,
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        on_chunk: Callable[[np.ndarray], bool],
    ) -> int:
        """Speak `text`, handing each int16 mono chunk to `on_chunk` as espeak produces it.

        `on_chunk` runs on this thread while the process-wide lock is held; returning False stops
        synthesis. Returns how many samples were handed over. `voice` may carry its variant
        ("en-us+f3") when `variant` is not given.
        """
        base, plus, inline_variant = voice.partition("+") if isinstance(voice, str) else (voice, "", "")
        if plus and variant is not None:
            raise ValueError(f"variant given twice: in voice {voice!r} and as variant={variant!r}")
        identifier = self.resolve_voice(base)
        variant = inline_variant if plus else variant
        if variant is not None:
            variant = self.resolve_variant(variant)
        settings = (
            (_PARAM_RATE, _range_check("rate", rate, RATE_RANGE)),
            (_PARAM_PITCH, _range_check("pitch", pitch, PITCH_RANGE)),
            (_PARAM_RANGE, _range_check("pitch_range", pitch_range, PITCH_RANGE_RANGE)),
            (_PARAM_VOLUME, _range_check("volume", volume, VOLUME_RANGE)),
        )
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        encoded = _CONTROL_CHARS.sub(" ", text).encode("utf-8", "replace")
        if not encoded.strip():
            return 0
        spec = f"{identifier}+{variant}" if variant else identifier

        global _lock_owner
        if _lock_owner == threading.get_ident():
            raise RuntimeError("synthesize was called from inside on_chunk; espeak cannot nest syntheses")
        library = _loaded()
        lib = library.lib
        with _LOCK:
            _lock_owner = threading.get_ident()
            try:
                status = lib.espeak_SetVoiceByName(spec.encode("utf-8"))
                if status != _EE_OK:
                    raise ValueError(f"espeak refused voice {spec!r} (error {status})")
                for parameter, value in settings:  # every call: espeak keeps them between calls
                    lib.espeak_SetParameter(parameter, value, 0)
                sink = _Sink(on_chunk)
                library.sink = sink
                try:
                    status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                              None, None)
                finally:
                    library.sink = None
            finally:
                _lock_owner = None
        if sink.error is not None:
            raise sink.error
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {status}")
        return sink.samples


def resolve_voice(name: str) -> str:
    """Module-level shortcut for Espeak().resolve_voice(name)."""
    return Espeak().resolve_voice(name)
