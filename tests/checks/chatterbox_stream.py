"""Runs inside the chatterbox family venv: streaming S3Gen (engines/chatterbox/stream.py) on the real package.

    python -m tests.checks.chatterbox_stream STANDARD_DIR TURBO_DIR  ->  one JSON object on the last stdout line

(from the repository root; the directories are the random-weight checkpoints of tests/checkpoints/chatterbox.py,
loaded through the package's own from_local, on the CPU in float32). It reports:
- decode: for each model, 60 random S3 tokens streamed (the engine's chunk schedule) against the same tokens
  decoded whole with the same fixed noise: mel frames, and audio outside the joins;
- watermark: Perth's own detector on the clip unmarked, marked whole as upstream marks it, and streamed;
  and whether the engine's load-time check lets pieces be streamed;
- engine: a piece through ChatterboxEngine (standard: T3 made to stop after 60 tokens; Turbo as built), its
  events in order (T3 draws, audio sent), Perth's detector on what was sent, the same for the whole-piece path;
- cancel: a say cancelled once its first audio is sent, and what it left patched.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["MCP_TTS_DEVICE"] = "cpu"
torch.set_num_threads(2)

from engines import launch  # noqa: E402  (mcp_tts.engines without the server side, as in an engine host)

launch.install()

from mcp_tts.engines.chatterbox import engine as cb  # noqa: E402
from mcp_tts.engines.chatterbox import stream as st  # noqa: E402
from mcp_tts.engines.contract.protocol import Synthesize  # noqa: E402
from mcp_tts.engines.runtime.synthesis import Cancelled  # noqa: E402

TOKENS = 60
STOP_AT = 60  # the standard model's stop moved here in memory (the checkpoint stops after 24)
STOP_CHANNEL = 7  # tests/checkpoints/chatterbox.py's stop edit


def report(_message, *_):
    pass


def decode_case(model) -> dict:
    """Streamed against whole, with the same tokens and noise."""
    s3gen, ref = model.s3gen, model.conds.gen
    tokens = torch.randint(0, st.S3_VOCABULARY, (TOKENS,), generator=torch.Generator().manual_seed(3))
    noise = st.FixedNoise.make(s3gen.device)
    chunks: list[np.ndarray] = []
    stream = st.S3GenStream(s3gen, ref, noise, chunks.append)
    for n in range(8, TOKENS + 1, 8):  # as the fast decode hands them over
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
            "max_step": float(np.max(np.abs(np.diff(whole)))),
            "clean": streamed}


def watermark_case(model, clean: np.ndarray, pieces: list[int]) -> dict:
    found = st.marked_stream_detected(model.watermarker, clean, pieces)
    found["engine_streams"] = cb._stream_check("check", model) is not None
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
    sent = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
    first_audio = kinds.index("audio") if "audio" in kinds else None
    last_token = len(kinds) - 1 - kinds[::-1].index("token") if "token" in kinds else None
    left = sorted(name for name in ("inference", "inference_turbo") if name in vars(resident.model.t3)) + \
        sorted(f"s3gen.{name}" for name in ("inference",) if name in vars(resident.model.s3gen))
    return {"outcome": outcome, "streamed": resident.noise is not None, "tokens": kinds.count("token"),
            "audio_events": kinds.count("audio"), "first_audio_at": first_audio, "last_token_at": last_token,
            "tokens_after_first_audio": kinds[first_audio:].count("token") if first_audio is not None else None,
            "samples": len(sent), "rms": float(np.sqrt(np.mean(sent ** 2))) if len(sent) else 0.0,
            "detected": st.detected(resident.model.watermarker, sent) if len(sent) > 4800 else None,
            "left_patched": left}


def main() -> int:
    standard_dir, turbo_dir = sys.argv[1], sys.argv[2]
    out: dict = {}
    st.SCHEDULE = (4, 8)  # more chunks from the checkpoints' short pieces, so joins are exercised
    engine = cb.ChatterboxEngine()
    for backend, model_dir in (("chatterbox", standard_dir), ("chatterbox-turbo", turbo_dir)):
        resident, _ = engine._get(backend, model_dir, report)
        model = resident.model
        if backend == "chatterbox":  # the stop moves from speech position 24 to 60
            emb = model.t3.speech_pos_emb.emb.weight
            with torch.no_grad():
                emb[24, STOP_CHANNEL] = emb[25, STOP_CHANNEL]
                emb[STOP_AT, STOP_CHANNEL] = 100.0
        torch.manual_seed(0)
        case = decode_case(model)
        clean = case.pop("clean")
        out[backend] = {"decode": case, "watermark": watermark_case(model, clean, case["chunk_samples"])}
        torch.manual_seed(1)
        out[backend]["engine"] = engine_case(engine, backend, model_dir, "The build is green and the tests pass.")
        torch.manual_seed(1)
        noise, resident.noise = resident.noise, None  # the whole-piece path, marked by upstream's generate()
        out[backend]["whole_engine"] = engine_case(engine, backend, model_dir, "The build is green and the tests pass.")
        resident.noise = noise
        torch.manual_seed(2)
        out[backend]["cancel"] = engine_case(engine, backend, model_dir, "The build is green and the tests pass.",
                                             cancel_after_first=True)
        engine.resident.clear()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
