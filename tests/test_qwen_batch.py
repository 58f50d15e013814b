"""Many voices at once: the qwen fast path decodes concurrent requests in one batch (engines/qwen/batch.py).

The comparisons run in the family venv on tiny checkpoints (tests/checks/qwen_batch.py: the same loop as on
the GPU, without graph capture); the end-to-end test sends requests from two MCP servers at once to one
qwen host and cancels a third."""

from __future__ import annotations

import json
import os
import re
import subprocess

import anyio
import numpy as np
import pytest

from tests.support.families import REPO, qwen_env
from tests.support.mcp_client import audio_of, mcp_session

CHECK = "tests.checks.qwen_batch"  # run as a module from the repository root, in the family venv

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def report(qwen_family, tmp_path_factory) -> dict:
    result = subprocess.run([str(qwen_family), "-m", CHECK, str(tmp_path_factory.mktemp("ck")), "300"],
                            cwd=REPO, capture_output=True, text=True, timeout=840)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kernel_report(qwen_family, qwen_triton, tmp_path_factory) -> dict:
    """The multi-row kernel step (the batch's step on CUDA) in Triton's interpreter."""
    env = {**os.environ, "PYTHONPATH": str(qwen_triton), "TRITON_INTERPRET": "1"}
    result = subprocess.run([str(qwen_family), "-m", CHECK, str(tmp_path_factory.mktemp("ck")), "--kernels"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["kernel_batch"]


def test_each_stream_through_the_kernel_step_has_the_codes_it_has_alone(kernel_report):
    got = kernel_report
    assert got["kernel_step"] and got["widest_batch"] == 3 and got["batched_steps"] >= 10, got
    for r in got["batched_vs_alone"]:
        assert r.get("equal"), got["batched_vs_alone"]


def test_mixed_settings_through_the_kernel_step_stay_apart(kernel_report):
    got = kernel_report
    assert got["mixed_greedy_vs_alone"]["equal"], got["mixed_greedy_vs_alone"]
    assert got["mixed_sampled_frames"] == [12, 12], got


def test_chunks_of_several_streams_decode_together_as_they_do_alone(report):
    got = report["codec"]
    assert got["calls_together"] == 1 and got["lengths_equal"]
    assert got["max_abs_diff"] < 1e-4 * max(1.0, got["peak"]), got


def test_each_stream_in_a_batch_has_the_codes_it_has_alone(report):
    got = report["greedy"]
    assert all(r["equal"] for r in got["alone_vs_upstream"]), got["alone_vs_upstream"]
    assert got["widest_batch"] >= 3  # they did share steps: joining late, leaving early
    for r in got["batched_vs_alone"]:
        assert r.get("equal"), got["batched_vs_alone"]


def test_mixed_settings_in_one_batch_stay_apart(report):
    got = report["greedy"]
    assert got["mixed_greedy_vs_alone"]["equal"], got["mixed_greedy_vs_alone"]
    assert all(got["mixed_sampled_ok"])


def test_a_cancelled_stream_leaves_and_the_others_go_on(report):
    got = report["greedy"]
    assert "listener left" in got["cancelled"] and got["heard_before_cancel"] >= 10
    assert all(r.get("equal") for r in got["others_after_cancel"]), got["others_after_cancel"]
    assert got["rows_left"] == 0


def test_sampling_per_stream_has_upstreams_distribution(report):
    got = report["sampling"]
    assert got["widest_batch"] == 4 and got["distinct"] > 20
    assert got["p_same_temperature"] > 0.001, got
    # rows of another temperature in the same batches: the test tells them apart, so the rows' settings stay theirs
    assert got["p_other_temperature"] < 0.001, got


@pytest.mark.anyio
async def test_two_servers_speak_at_once_through_one_batch_and_a_cancel_leaves_the_others(home, qwen_hub):
    frames = 150  # long enough on this CPU that the requests overlap
    env = qwen_env(home, None, qwen_hub, MCP_TTS_OUTPUT="audio", MCP_TTS_QWEN_MAX_NEW_TOKENS=str(frames + 1))
    results: dict[str, object] = {}
    async with mcp_session(env) as first, mcp_session(env) as second, mcp_session(env) as third:
        await first.call_tool("switch_backend", {"backend": "qwen-custom"})  # loads the model once, in the host

        async def say(name, session, voice):
            results[name] = await session.call_tool("say", {"text": "Two agents talk at once.",
                                                            "backend": "qwen-custom", "voice": voice})

        async def cancelled():
            with anyio.move_on_after(1.5):
                await third.call_tool("say", {"text": "This one is stopped.", "backend": "qwen-custom"})

        with anyio.fail_after(300):
            async with anyio.create_task_group() as group:
                group.start_soon(say, "a", first, "Vivian")
                group.start_soon(say, "b", second, "Ryan")
                group.start_soon(cancelled)
    for name in ("a", "b"):
        samples, rate = audio_of(results[name])
        assert rate == 24000 and len(samples) == frames * 1920 and np.sqrt(np.mean(samples ** 2)) > 1e-3
    log = (home / "run" / "qwen.log").read_text()
    assert "Traceback" not in log
    widest = max(int(n) for n in re.findall(r"(\d+) streams decoded together", log))
    assert widest >= 2, log[-2000:]
