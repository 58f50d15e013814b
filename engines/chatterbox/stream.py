"""Streaming S3Gen for Chatterbox and Chatterbox Turbo: speech tokens become audio in chunks while T3 goes on.

Runs in the chatterbox host. Upstream turns a piece's speech tokens into audio in one S3Gen call (flow
matching to mels, then the HiFT vocoder) once T3 has finished, and watermarks the whole clip; the
first sound waits for both. Here (`S3GenStream`):
- tokens are fed as T3 draws them; a chunk is made once `schedule` more tokens than the last chunk
  are in, plus the flow's look-ahead (`LOOKAHEAD`: the encoder reads 3 tokens ahead), whose mels
  are dropped until a later chunk makes them again;
- the flow runs over the voice's prompt and the last `context` tokens, with noise fixed per mel
  frame (`FixedNoise`): a frame gets the same starting noise in every chunk that covers it, so mels
  made in successive chunks agree (the encoder and the estimator attend over the whole window, so a
  frame's mel still moves a little as later tokens arrive: hence the overlap below);
- the vocoder runs on the new mel frames plus `overlap` frames before them, its harmonic source over
  those frames taken from the previous call (HiFT's `cache_source`), and the audio of the overlap
  is crossfaded (raised cosine) with what the previous call made of it; the last `overlap` frames of
  a chunk are held back for that crossfade until the next chunk or the end;
- the stream's start gets upstream's `trim_fade` (20 ms of silence, 20 ms fade-in).

`StreamMarker` watermarks what is emitted with Perth's own `apply_watermark`, pass by pass: each pass
marks the new audio with `context` seconds of audio before it (already emitted) and `hold` seconds
after it (emitted by the next pass), so every emitted sample was marked with the context Perth's
encoder reads (its convolutions span ~0.15 s each side at 10 ms frames), and passes start on Perth's
frame grid. Passes join by a short crossfade of two marked versions of the same audio.
`marked_stream_detected` runs Perth's detector on a streamed clip against the clip marked whole; the
engine streams only when it passes, and otherwise speaks whole pieces as upstream does.

Whole-clip decode with the same fixed noise (`decode_whole`) is what the stream is compared with in
tests/checks/chatterbox_stream.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger("mcp_tts.chatterbox.stream")

S3_VOCABULARY = 6561  # speech ids S3Gen turns into sound; above: start, stop and unused ids
STOP_TOKEN = 6562
LOOKAHEAD = 3  # tokens the flow encoder reads ahead (CausalMaskedDiffWithXvec.pre_lookahead_len)
MEL_PER_TOKEN = 2  # 25 tokens/s -> 50 mel frames/s
SAMPLES_PER_MEL = 480  # HiFT: 24 kHz / 50 frames
SAMPLE_RATE = 24000
SCHEDULE = (8, 16, 32, 50)  # new tokens per chunk: small first, then larger (the last repeats)
OVERLAP = 6  # mel frames vocoded twice and crossfaded at each join
CONTEXT = 100  # tokens before a chunk's new ones that the flow sees (bounds a chunk's cost)
NOISE_SEED = 0
FLOW_STEPS = 10  # upstream's flow_inference default for the standard S3Gen ...
MEANFLOW_STEPS = 2  # ... and for Turbo's meanflow S3Gen

Emit = Callable[[np.ndarray], None]


@dataclass
class FixedNoise:
    """Flow-matching starting noise, one column per mel frame, fixed for a stream: [1, 80, frames]."""

    prompt: torch.Tensor
    speech: torch.Tensor

    @classmethod
    def make(cls, device, dtype=torch.float32, prompt_frames: int = 1000, speech_frames: int = 2 * 1100,
             seed: int = NOISE_SEED) -> FixedNoise:
        generator = torch.Generator().manual_seed(seed)
        prompt = torch.randn(1, 80, prompt_frames, generator=generator)
        speech = torch.randn(1, 80, speech_frames, generator=generator)
        return cls(prompt.to(device=device, dtype=dtype), speech.to(device=device, dtype=dtype))

    def window(self, prompt_frames: int, start: int, frames: int) -> torch.Tensor:
        """The noise for a flow call over the prompt and speech frames [start, start + frames)."""
        if prompt_frames > self.prompt.shape[2] or start + frames > self.speech.shape[2]:
            raise ValueError(f"fixed noise covers {self.prompt.shape[2]} prompt and {self.speech.shape[2]} speech "
                             f"frames, not {prompt_frames} and {start + frames}")
        return torch.cat([self.prompt[:, :, :prompt_frames], self.speech[:, :, start:start + frames]], dim=2)


def s3_tokens(raw: torch.Tensor, stop: int = STOP_TOKEN) -> torch.Tensor:
    """T3's raw draws (1-D) -> the tokens S3Gen is given: up to the stop token, S3 ids only (generate()'s
    drop_invalid_tokens and its `< 6561` filter)."""
    stops = (raw == stop).nonzero()
    if len(stops):
        raw = raw[: int(stops[0])]
    return raw[raw < S3_VOCABULARY]


def _raised_cosine(n: int) -> np.ndarray:
    """0 -> 1 over n samples (excluding both ends), for crossfades."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n, dtype=np.float32) + 1) / (n + 1))).astype(np.float32)


class S3GenStream:
    """One piece: S3 speech tokens in (as they come), clean 24 kHz audio out (as chunks)."""

    def __init__(self, s3gen, ref_dict: dict, noise: FixedNoise, emit: Emit, *, schedule=None,
                 overlap: int = OVERLAP, context: int = CONTEXT, check: Callable[[], None] | None = None,
                 stop_token: int = STOP_TOKEN, steps: int | None = None) -> None:
        self.s3gen, self.ref, self.noise, self.emit = s3gen, ref_dict, noise, emit
        self.schedule = tuple(schedule or SCHEDULE)
        self.overlap, self.context, self.check, self.stop_token = overlap, context, check, stop_token
        self.steps = steps or (MEANFLOW_STEPS if s3gen.meanflow else FLOW_STEPS)
        self.prompt_tokens = int(ref_dict["prompt_token"].shape[-1])
        self.prompt_frames = int(ref_dict["prompt_feat"].shape[1])
        self.tokens = torch.zeros(0, dtype=torch.long, device=s3gen.device)  # S3 tokens fed so far
        self.done_tokens = 0  # tokens whose mels have gone to the vocoder (beyond the held-back overlap)
        self.mel_end = 0  # global mel frames vocoded so far (the last `overlap` of them held back as audio)
        self.source_tail: torch.Tensor | None = None  # HiFT source of the held-back frames [1, 1, samples]
        self.audio_tail = np.zeros(0, dtype=np.float32)  # audio of the held-back frames, to crossfade
        self.samples_out = 0
        self.chunks = 0
        self.finished = False

    # --- feeding -----------------------------------------------------------------------------------

    def feed(self, raw: torch.Tensor) -> None:
        """All of T3's draws so far (1-D, the stop token and draws past it included): a chunk when due."""
        tokens = s3_tokens(raw, self.stop_token)
        self.tokens = tokens.to(self.s3gen.device)
        while not self.finished:
            due = self.done_tokens + self.schedule[min(self.chunks, len(self.schedule) - 1)]
            if len(self.tokens) < due + LOOKAHEAD:
                return
            self._chunk(due, final=False)

    def finish(self, tokens: torch.Tensor) -> None:
        """The piece's tokens as generate() hands them to S3Gen (Turbo adds 3 silence tokens): the rest."""
        tokens = torch.atleast_1d(tokens.reshape(-1)).to(self.s3gen.device)
        fed = self.tokens[: len(tokens)]
        if len(fed) and not torch.equal(tokens[: len(fed)], fed):
            log.warning("the final tokens differ from the streamed ones; the rest follows the final ones")
        self.tokens = tokens
        self._chunk(len(tokens), final=True)
        self.finished = True

    # --- one chunk ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def _chunk(self, upto: int, final: bool) -> None:
        """Mels for tokens [done, upto) (all tokens when final), then their audio."""
        if self.check is not None:
            self.check()
        start = max(0, self.done_tokens - self.context)
        window = self.tokens[start: upto + (0 if final else LOOKAHEAD)]
        mels = self._flow(window, start, final)  # [1, 80, frames] for global frames 2*start on
        end = MEL_PER_TOKEN * start + mels.shape[2]
        if not final:
            end = min(end, MEL_PER_TOKEN * upto)
        first = max(0, self.mel_end - self.overlap)  # re-vocode the held-back frames
        if end <= first:
            return
        feat = mels[:, :, first - MEL_PER_TOKEN * start: end - MEL_PER_TOKEN * start]
        cached = self.source_tail if self.source_tail is not None else torch.zeros(1, 1, 0, device=feat.device)
        wav, source = self.s3gen.mel2wav.inference(speech_feat=feat.to(self.s3gen.dtype), cache_source=cached)
        audio = wav[0].float().cpu().numpy()
        held = len(self.audio_tail)
        if held:  # crossfade the re-vocoded overlap with what the previous call made of it
            ramp = _raised_cosine(held)
            audio[:held] = self.audio_tail * (1 - ramp) + audio[:held] * ramp
        keep = 0 if final else min(self.overlap, end - first) * SAMPLES_PER_MEL
        out, self.audio_tail = (audio[: len(audio) - keep], audio[len(audio) - keep:]) if keep else (audio, audio[:0])
        self.source_tail = source[:, :, source.shape[2] - keep:] if keep else None
        self.mel_end = end
        self.done_tokens = upto
        self.chunks += 1
        self._emit(out)

    def _flow(self, window: torch.Tensor, start: int, final: bool) -> torch.Tensor:
        """Upstream's token-to-mel (S3Token2Mel.forward) with the fixed noise as its starting point."""
        from chatterbox.models.s3gen.s3gen import S3Token2Mel

        frames = MEL_PER_TOKEN * (self.prompt_tokens + len(window))
        z = self.noise.window(self.prompt_frames, MEL_PER_TOKEN * start, frames - self.prompt_frames)
        # noised_mels as long as the whole flow input sets all of its starting noise. finalize=True always: the
        # package's finalize=False trims the encoder output but not its mask (a shape error), so the look-ahead
        # tokens' mels are made and the caller drops them (they are made again, with more context, next chunk)
        return S3Token2Mel.forward(self.s3gen, window[None], ref_wav=None, ref_sr=None, ref_dict=self.ref,
                                   n_cfm_timesteps=self.steps, finalize=True, noised_mels=z.to(self.s3gen.dtype))

    def _emit(self, audio: np.ndarray) -> None:
        fade = self.s3gen.trim_fade.float().cpu().numpy()  # upstream's start: 20 ms silence, 20 ms fade-in
        if self.samples_out < len(fade):
            n = min(len(fade) - self.samples_out, len(audio))
            audio = audio.copy()
            audio[:n] *= fade[self.samples_out: self.samples_out + n]
        self.samples_out += len(audio)
        if len(audio):
            self.emit(audio)


@torch.inference_mode()
def decode_whole(s3gen, ref_dict: dict, tokens: torch.Tensor, noise: FixedNoise, steps: int | None = None
                 ) -> np.ndarray:
    """Upstream's whole-clip S3Gen (S3Token2Wav.inference) with the stream's fixed noise: the reference the
    stream is measured against."""
    out: list[np.ndarray] = []
    stream = S3GenStream(s3gen, ref_dict, noise, out.append, context=10**6, steps=steps)
    stream.finish(tokens)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def short_prompt(ref_dict: dict, tokens: int) -> dict:
    """The voice's S3Gen prompt cut to its first `tokens` tokens (and their mel frames): a cheaper flow."""
    ref = dict(ref_dict)
    ref["prompt_token"] = ref_dict["prompt_token"][:, :tokens]
    ref["prompt_token_len"] = torch.full_like(ref_dict["prompt_token_len"], ref["prompt_token"].shape[1])
    ref["prompt_feat"] = ref_dict["prompt_feat"][:, :MEL_PER_TOKEN * ref["prompt_token"].shape[1]]
    if ref_dict.get("prompt_feat_len") is not None:
        ref["prompt_feat_len"] = torch.full_like(ref_dict["prompt_feat_len"], ref["prompt_feat"].shape[1])
    return ref


# --- the watermark --------------------------------------------------------------------------------

MARK_CONTEXT = 1.0  # seconds of emitted audio each pass reads before its new audio
MARK_HOLD = 0.2  # seconds held back for the next pass, so each emitted sample had audio after it
MARK_FADE = 0.005  # seconds of crossfade between two passes' marks of the same samples
MARK_GRID = 240  # Perth's hop (320 at 32 kHz) at 24 kHz: passes start on its frame grid


class StreamMarker:
    """Clean audio in, audio carrying Perth's watermark out, with a delay of `hold` seconds."""

    def __init__(self, watermarker, emit: Emit, sample_rate: int = SAMPLE_RATE, context: float = MARK_CONTEXT,
                 hold: float = MARK_HOLD, fade: float = MARK_FADE) -> None:
        self.watermarker, self.emit, self.rate = watermarker, emit, sample_rate
        self.context, self.hold = int(context * sample_rate), int(hold * sample_rate)
        self.fade = max(1, int(fade * sample_rate))
        self.buffer = np.zeros(0, dtype=np.float32)  # clean audio from sample `base` on
        self.base = 0
        self.emitted = 0  # samples emitted (global)
        self.marked_tail = np.zeros(0, dtype=np.float32)  # the last pass's mark of [emitted, emitted + fade)

    def push(self, clean: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, np.asarray(clean, dtype=np.float32)])
        end = self.base + len(self.buffer) - self.hold
        if end - self.emitted >= self.hold:  # marks at least `hold` new samples a pass
            self._pass(end)

    def finish(self) -> None:
        self._pass(self.base + len(self.buffer))

    def _pass(self, end: int) -> None:
        if end <= self.emitted:
            return
        start = max(self.base, (max(0, self.emitted - self.context) // MARK_GRID) * MARK_GRID)
        clean = self.buffer[start - self.base:]
        marked = np.asarray(self.watermarker.apply_watermark(clean, sample_rate=self.rate), dtype=np.float32)
        marked = np.pad(marked[: len(clean)], (0, max(0, len(clean) - len(marked))))
        out = marked[self.emitted - start: end - start].copy()
        n = min(len(self.marked_tail), len(out))
        if n:
            ramp = _raised_cosine(n)
            out[:n] = self.marked_tail[:n] * (1 - ramp) + out[:n] * ramp
        self.marked_tail = marked[end - start: end - start + self.fade]
        self.emitted = end
        keep_from = max(self.base, ((end - self.context) // MARK_GRID) * MARK_GRID - MARK_GRID)
        self.buffer = self.buffer[keep_from - self.base:]
        self.base = keep_from
        if len(out):
            self.emit(out)


def detected(watermarker, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Perth's own detector on a clip: the share of its reading that says marked (its `get_watermark`)."""
    return float(np.mean(watermarker.get_watermark(np.asarray(audio, dtype=np.float32), sample_rate=sample_rate)))


def marked_stream_detected(watermarker, clean: np.ndarray, pieces: list[int],
                           sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Perth's detector on `clean` unmarked, marked whole (as upstream marks) and marked as a stream fed in
    pieces of the given lengths: the engine streams only when the streamed clip reads as marked as the
    whole one."""
    out: list[np.ndarray] = []
    marker = StreamMarker(watermarker, out.append, sample_rate)
    at = 0
    for size in pieces:
        marker.push(clean[at: at + size])
        at += size
    marker.push(clean[at:])
    marker.finish()
    streamed = np.concatenate(out)
    whole = np.asarray(watermarker.apply_watermark(clean, sample_rate=sample_rate), dtype=np.float32)
    return {"clean": detected(watermarker, clean, sample_rate), "whole": detected(watermarker, whole, sample_rate),
            "streamed": detected(watermarker, streamed, sample_rate), "samples": float(len(streamed)),
            "max_diff_to_whole": float(np.max(np.abs(streamed - whole[: len(streamed)]))) if len(streamed) else 0.0}
