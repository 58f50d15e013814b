"""Long text as a pipeline of pieces: each piece synthesized in turn and heard as soon as it is made.

A model call has a cap (Chatterbox stops at 40 s of speech, Qwen at its token limit), and one long
call would hold the first sound until a model that does not stream has finished. So text is split
at sentence boundaries (engines/runtime/sentences.py) into pieces under a character budget; while piece k
plays, piece k+1 is synthesized. Pieces are made separately, so their edges are faded over a few
milliseconds: a waveform that stops mid-swing clicks.

The budget is the engine's own, or MCP_TTS_PIECE_CHARS for every engine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

from .sentences import split_sentences
from .synthesis import Cancelled, Emit, Report

FADE_SECONDS = 0.005

SynthPiece = Callable[[str, Emit], None]  # speaks one piece, emitting its audio as it comes


def piece_chars(default: int) -> int:
    raw = os.environ.get("MCP_TTS_PIECE_CHARS")
    try:
        return max(20, int(raw)) if raw else default
    except ValueError:
        return default


class Joiner:
    """Passes audio on as it comes, holding back only the last few milliseconds of the current
    piece, so that its end can be faded out once the piece is over; the next piece fades in."""

    def __init__(self, emit: Emit, sample_rate: int) -> None:
        self.emit = emit
        self.fade = max(1, int(sample_rate * FADE_SECONDS))
        self.tail = np.zeros(0, dtype=np.float32)
        self.faded_in = self.fade  # samples of the current piece's fade-in already applied
        self.pieces = 0

    def push(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.faded_in < self.fade and len(chunk):
            n = min(self.fade - self.faded_in, len(chunk))
            ramp = (np.arange(self.faded_in, self.faded_in + n, dtype=np.float32) + 1) / (self.fade + 1)
            chunk = chunk.copy()
            chunk[:n] *= ramp
            self.faded_in += n
        joined = np.concatenate([self.tail, chunk]) if len(self.tail) else chunk
        if len(joined) > self.fade:
            self.emit(joined[:-self.fade])
            self.tail = joined[-self.fade:]
        else:
            self.tail = joined

    def end_piece(self, last: bool) -> None:
        """The current piece is over: its held-back end goes out, faded unless the speech ends here."""
        tail = self.tail
        if not last and len(tail):
            tail = tail * np.linspace(1.0, 0.0, len(tail) + 1, dtype=np.float32)[1:]
        if len(tail):
            self.emit(tail)
        self.tail = np.zeros(0, dtype=np.float32)
        self.faded_in = 0  # the next piece fades in
        self.pieces += 1


def speak_pieces(text: str, budget: int, synth: SynthPiece, emit: Emit, sample_rate: int,
                 cancelled: threading.Event, report: Report, pause: float = 0.0) -> int:
    """Speaks `text` piece by piece, `pause` seconds of silence between pieces (the sentence gap the
    engine makes inside one text, which a piece on its own lacks); returns the number of pieces."""
    pieces = split_sentences(text, budget) or [text]
    joiner = Joiner(emit, sample_rate)
    for index, piece in enumerate(pieces):
        if cancelled.is_set():
            raise Cancelled()
        synth(piece, joiner.push)
        last = index == len(pieces) - 1
        joiner.end_piece(last)
        if not last and pause > 0:
            emit(np.zeros(int(pause * sample_rate), dtype=np.float32))
        if len(pieces) > 1:
            report(f"synthesized part {index + 1} of {len(pieces)}", index + 1, len(pieces))
    return len(pieces)
