"""Streaming S3Gen (engines/chatterbox/stream.py) in the chatterbox family venv, on the random-weight checkpoints
of tests/checkpoints/chatterbox.py loaded through the package's own loaders (CPU, float32): streamed audio
against the whole-clip decode, Perth's own detector on what is streamed, chunks sent while T3 goes on, cancel.
What tests/checks/chatterbox_stream.py shortens to run in minutes is said in its docstring."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.families import REPO, chatterbox_snapshot

CHECK = "tests.checks.chatterbox_stream"  # run as a module from the repository root, in the family venv
BACKENDS = ("chatterbox", "chatterbox-turbo")

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def report(chatterbox_family, chatterbox_hub) -> dict:
    dirs = [str(chatterbox_snapshot(chatterbox_hub, repo)) for repo in
            ("ResembleAI/chatterbox", "ResembleAI/chatterbox-turbo")]
    result = subprocess.run([str(chatterbox_family), "-m", CHECK, *dirs], cwd=REPO, capture_output=True, text=True,
                            timeout=1400)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_audio_matches_the_whole_clip_decode(report, backend):
    got = report[backend]["decode"]
    assert got["chunks"] >= 4 and got["rms"] > 1e-3
    assert got["streamed_samples"] == got["whole_samples"]
    # BOUNDS: the stream's mels come from windows that have not seen the later tokens (the flow attends
    # over its whole input), so it is close to the whole decode, not equal
    # (measured on these checkpoints, 24 tokens in 4 chunks: see the bounds' commit)
    assert got["corr_away_from_joins"] > 0.95
    assert got["max_diff_away_from_joins"] < got["rms"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_joins_do_not_click(report, backend):
    got = report[backend]["decode"]
    assert got["max_step_at_joins"] <= got["max_step"]  # no jump at a join larger than the clip's own largest


@pytest.mark.parametrize("backend", BACKENDS)
def test_perths_detector_reads_the_stream_as_marked_as_the_whole_clip(report, backend):
    got = report[backend]["watermark"]  # the reading the engine's load-time check decides on
    assert got["whole"] >= 0.5 and got["streamed"] >= 0.5 and got["clean"] < 0.5
    assert got["engine_streams"]


def test_what_the_engine_streams_carries_the_watermark(report):
    got = report["chatterbox-turbo"]["engine"]
    assert got["streamed"] and got["detected"] >= 0.5


def test_first_audio_is_sent_while_t3_goes_on(report):
    got = report["chatterbox-turbo"]["engine"]
    assert got["outcome"] == "finished" and got["streamed"]
    assert got["audio_events"] >= 2 and got["first_audio_at"] < got["last_token_at"]
    assert got["tokens_after_first_audio"] >= 8  # a read of the stop flag (fast_t3.CHECK_EVERY) after it
    # the whole piece, as upstream's generate() makes it: T3's 24 tokens and Turbo's 3 of silence, 960 samples each
    assert got["speech_tokens"] == 24 and got["samples"] == (24 + 3) * 960


def test_cancel_mid_stream_stops_t3_and_leaves_nothing_patched(report):
    got = report["chatterbox-turbo"]["cancel"]
    full = report["chatterbox-turbo"]["engine"]
    assert got["outcome"] == "cancelled" and got["audio_events"] >= 1 and got["samples"] < full["samples"]
    assert got["tokens_after_first_audio"] <= 8  # T3 ends at its next check (fast_t3.CHECK_EVERY)
    assert got["left_patched"] == [] and full["left_patched"] == []
