"""Runs inside the chatterbox family venv: streaming S3Gen (engines/chatterbox/stream.py) on the real package.

    python -m tests.checks.chatterbox_stream STANDARD_DIR TURBO_DIR  ->  one JSON object on the last stdout line

(from the repository root; the directories are the random-weight checkpoints of tests/checkpoints/chatterbox.py,
loaded through the package's own engine, on the CPU in float32). To run in minutes on two CPU cores, the preset
voice's S3Gen prompt is cut to its first 10 tokens, the standard flow runs 2 Euler steps (upstream: 10; Turbo's
meanflow runs its own 2) in the stream and in its whole-clip reference alike, and a chunk's flow sees 12 tokens
before its new ones (the engine: 100; the pieces here are shorter than that); the chunking, look-ahead, noise,
vocoder cache, crossfades and watermark passes are the engine's. It reports:
- decode: for each model, 24 random S3 tokens streamed (chunks of 4 then 8 tokens) against the same tokens
  decoded whole with the same fixed noise: mel frames, and audio outside the joins;
- watermark: the engine's load-time reading (Perth's own detector on a clip of the model's S3Gen unmarked,
  marked whole as upstream marks it, and marked pass by pass) and whether it lets pieces be streamed;
- engine (Turbo: its checkpoint's 24 speech tokens are all S3 tokens, so when chunks fall due is known; the
  standard T3 draws ids outside them, and at ~2.5 s a token here): a piece through ChatterboxEngine, its events
  in order (T3 draws, audio sent) and Perth's detector on what was sent;
- cancel (Turbo): a say cancelled once its first audio is sent, and what it left patched.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["MCP_TTS_DEVICE"] = "cpu"
os.environ["MCP_TTS_CHATTERBOX_STREAM"] = "1"  # both models stream here (the default streams Turbo only)
torch.set_num_threads(2)

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

from mcp_tts.engines.chatterbox import engine as cb  # noqa: E402
from mcp_tts.engines.chatterbox import stream as st  # noqa: E402
from mcp_tts.engines.contract.protocol import Synthesize  # noqa: E402
from mcp_tts.engines.runtime.synthesis import Cancelled  # noqa: E402

TOKENS = 24
PROMPT_TOKENS = 10  # the voice's S3Gen prompt cut to 0.4 s (the flow's cost grows with prompt + window)
CONTEXT = 12  # tokens before a chunk's new ones that its flow sees (the engine: 100), so the cut is exercised
DECODE_SCHEDULE = (4, 8)  # new tokens per chunk: 24 tokens in 4 chunks
# the engine's: the fast decode hands draws on every 8 (fast_t3.CHECK_EVERY) and the marker sends audio once it
# holds 2 x 0.2 s (stream.MARK_HOLD): a 14-token chunk at the 17th draw is sent before the checkpoint's stop (25th)
ENGINE_SCHEDULE = (4, 10)
FLOW_STEPS = 2


def report(_message, *_):
    pass


def decode_case(model) -> dict:
    """Streamed against whole, with the same tokens and noise."""
    s3gen, ref = model.s3gen, model.conds.gen
    tokens = torch.randint(0, st.S3_VOCABULARY, (TOKENS,), generator=torch.Generator().manual_seed(3))
    noise = st.FixedNoise.make(s3gen.device)
    chunks: list[np.ndarray] = []
    stream = st.S3GenStream(s3gen, ref, noise, chunks.append, schedule=DECODE_SCHEDULE)
    for n in range(8, TOKENS + 1, 8):  # as the fast decode hands them over (fast_t3.CHECK_EVERY)
        stream.feed(tokens[:n])
    stream.finish(tokens)
    streamed = np.concatenate(chunks)
    whole = st.decode_whole(s3gen, ref, tokens, noise)
    joins = np.cumsum([len(c) for c in chunks])[:-1]
    near_join = np.zeros(len(whole), dtype=bool)
    for j in joins:  # the crossfaded overlap ends at a join; it starts `overlap` frames before it
        near_join[max(0, j - st.OVERLAP * st.SAMPLES_PER_MEL): j + st.SAMPLES_PER_MEL] = True
    n = min(len(streamed), len(whole))
    diff = np.abs(streamed[:n] - whole[:n])
    away = ~near_join[:n]
    rms = float(np.sqrt(np.mean(whole ** 2)))
    return {"streamed_samples": len(streamed), "whole_samples": len(whole), "chunks": len(chunks),
            "chunk_samples": [len(c) for c in chunks], "rms": rms,
            "corr": float(np.corrcoef(streamed[:n], whole[:n])[0, 1]),
            "corr_away_from_joins": float(np.corrcoef(streamed[:n][away], whole[:n][away])[0, 1]),
            "max_diff_away_from_joins": float(diff[away].max()), "max_diff": float(diff.max()),
            "max_step_at_joins": float(max(abs(streamed[j] - streamed[j - 1]) for j in joins)) if len(joins) else 0.0,
            "max_step": float(np.max(np.abs(np.diff(whole))))}


def watermark_case(resident) -> dict:
    """The reading the engine's load-time check decides on (engine.stream_reading: Perth's detector on a clip
    of the model's S3Gen unmarked, marked whole, marked pass by pass), and what it decided."""
    found = cb.stream_reading(resident.model)
    found["engine_streams"] = resident.noise is not None
    return found


def engine_case(engine, backend: str, model_dir: str, text: str, cancel_after_first: bool = False) -> dict:
    resident, _ = engine._get(backend, model_dir, report)
    events: list[tuple[str, int]] = []
    decoder = resident.decoder
    step = decoder.step

    def counted_step():
        step()
        events.append(("token", len(events)))

    decoder.step = counted_step
    cancelled = threading.Event()
    audio: list[np.ndarray] = []

    def emit(chunk):
        audio.append(np.asarray(chunk, dtype=np.float32))
        events.append(("audio", len(chunk)))
        if cancel_after_first:
            cancelled.set()

    prepared = engine.prepare(Synthesize(id="x", backend=backend, text=text, model=model_dir), report)
    outcome = "finished"
    try:
        prepared.run(emit, cancelled)
    except Cancelled:
        outcome = "cancelled"
    finally:
        del decoder.step
    kinds = [k for k, _ in events]
    drawn = st.s3_tokens(decoder.tokens[: kinds.count("token") + 1])  # the prefill draws the first
    sent = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
    first_audio = kinds.index("audio") if "audio" in kinds else None
    last_token = len(kinds) - 1 - kinds[::-1].index("token") if "token" in kinds else None
    left = sorted(name for name in ("inference", "inference_turbo") if name in vars(resident.model.t3)) + \
        sorted(f"s3gen.{name}" for name in ("inference",) if name in vars(resident.model.s3gen))
    return {"outcome": outcome, "streamed": resident.noise is not None, "tokens": kinds.count("token"),
            "speech_tokens": len(drawn),
            "audio_events": kinds.count("audio"), "first_audio_at": first_audio, "last_token_at": last_token,
            "tokens_after_first_audio": kinds[first_audio:].count("token") if first_audio is not None else None,
            "samples": len(sent), "rms": float(np.sqrt(np.mean(sent ** 2))) if len(sent) else 0.0,
            "detected": st.detected(resident.model.watermarker, sent) if len(sent) > 4800 else None,
            "left_patched": left}


def timed(name: str, started: list[float]) -> None:
    """Where the minutes go, on stderr."""
    now = time.perf_counter()
    print(f"{name}: {now - started[0]:.1f} s", file=sys.stderr, flush=True)
    started[0] = now


def main() -> int:
    standard_dir, turbo_dir = sys.argv[1], sys.argv[2]
    clock = [time.perf_counter()]
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    logging.getLogger("mcp_tts").setLevel(logging.INFO)  # the engine's own account, with the times above
    out: dict = {}
    st.SCHEDULE = ENGINE_SCHEDULE
    st.CONTEXT = CONTEXT
    st.FLOW_STEPS = FLOW_STEPS
    engine = cb.ChatterboxEngine()
    text = "The build is green and the tests pass."
    for backend, model_dir in (("chatterbox", standard_dir), ("chatterbox-turbo", turbo_dir)):
        resident, _ = engine._get(backend, model_dir, report)
        timed(f"{backend} load", clock)
        model = resident.model
        model.conds.gen = st.short_prompt(model.conds.gen, PROMPT_TOKENS)  # the engine's preset voice too
        torch.manual_seed(0)
        out[backend] = {"decode": decode_case(model), "watermark": watermark_case(resident)}
        timed(f"{backend} decode and watermark", clock)
        if backend == "chatterbox-turbo":  # the engine's path is the same code for both models (see above)
            torch.manual_seed(1)
            out[backend]["engine"] = engine_case(engine, backend, model_dir, text)
            timed(f"{backend} engine", clock)
            torch.manual_seed(2)
            out[backend]["cancel"] = engine_case(engine, backend, model_dir, text, cancel_after_first=True)
            timed(f"{backend} cancel", clock)
        engine.resident.clear()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
