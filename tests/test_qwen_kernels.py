"""The GPU decode kernels (engines/qwen/kernels.py) on the CPU, in Triton's interpreter, in the qwen
family's python: each kernel against torch and HF, one position through real layer stacks against the
reference layer, and FastTalker's greedy codes through them against upstream's in all three modes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

CHECK = "tests.checks.qwen_kernels"  # run as a module from the repository root, in the family venv
REPO = Path(__file__).resolve().parents[1]

# the report runs every check once in Triton's interpreter: about 5 minutes on 2 cores (the check's own
# limit, 840 s, comes first: a hang fails as the check timing out, not as the whole test killed)
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def report(qwen_family, qwen_triton, tmp_path_factory) -> dict:
    env = {**os.environ, "PYTHONPATH": str(qwen_triton), "TRITON_INTERPRET": "1"}
    result = subprocess.run([str(qwen_family), "-m", CHECK, str(tmp_path_factory.mktemp("ck"))], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=840)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_gemv_form_matches_torch(report):
    for case, error in report["gemv"].items():
        assert error < (1e-5 if case.startswith("float32") else 0.05), (case, error)


@pytest.mark.parametrize("stack", ["talker", "code predictor", "talker, splits of 4 positions"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_position_through_the_layers_matches_the_reference_layer(report, stack, dtype):
    got = report["stacks"][f"{dtype} {stack}"]
    tolerance = 1e-5 if dtype == "float32" else 0.03
    assert got["out"] < tolerance and got["k"] < tolerance and got["v"] < tolerance, got
    assert got["earlier_rows_kept"]


def test_top_k_threshold_is_the_kth_largest_even_with_ties(report):
    got = report["kth_largest"]
    assert got["cases"] >= 150 and got["wrong"] == []  # including bf16 ties and -inf entries


def test_sampling_kernel_draws_from_hf_warpers_distribution(report):
    got = report["sampler"]
    for setting in ("top-k 8, temperature 0.9", "top-p 0.8, temperature 0.7", "temperature 1.3",
                    "top-p 0.5 over tied logits", "top-k 5 over tied logits"):
        assert got[setting]["p"] > 0.001, (setting, got[setting])
        # the same draws against another setting's distribution are rejected: the test has power
        assert got[setting]["p_other"] < 0.001, (setting, got[setting])
    assert got["temperature 1.3"]["distinct"] > 20
    assert got["greedy_is_argmax"]
    assert got["generated_counted"]  # each draw moves the frame count on: a Philox key per draw


def test_talker_draw_applies_hf_processors(report):
    got = report["talker_processors"]
    for setting in ("penalty 1.3, temperature 0.9, top-k 10", "penalty 2.0, temperature 1.0"):
        assert got[setting]["p"] > 0.001, (setting, got[setting])
        assert got[setting]["p_other"] < 0.001, (setting, got[setting])  # without that penalty: rejected
        assert got[setting]["suppressed_drawn"] == 0 and got[setting]["eos_drawn"] == 0, got[setting]
    banned, allowed = got["greedy"]
    assert banned["got"] == banned["want"] and allowed["got"] == allowed["want"], got["greedy"]
    assert allowed["got"] == 60 != banned["got"]  # end-of-speech wins once min_new frames are past
    assert banned["seen_set"] and allowed["seen_set"]
    assert banned["counters"] == [1, 41, 4] and allowed["counters"] == [6, 41, 4]  # generated, pos, step
    assert got["no_advance_counters"] == [1, 40, 3]


def test_kernels_drawing_one_code_draw_one_token(report):
    got = report["one_key_one_token"]
    assert got["same"] == got["draws"] and got["distinct"] > 5, got
    assert got["distinct_over_streams"] > 8, got  # 16 draws from 64 equally likely tokens


def test_sampled_codes_equal_with_draws_fused_or_separate(report):
    got = report["sampled_draw_paths"]
    assert got["frames"] >= 5 and got["equal"] and got["distinct_codes"] > 3, got


def test_talker_input_sums_the_frame_and_the_text(report):
    for case, got in report["talker_input"].items():
        assert got["error"] < (1e-5 if case.startswith("float32") else 0.02), (case, got)
        assert got["code15"] and got["code0"], (case, got)


@pytest.mark.parametrize("mode", ["custom_voice", "voice_design", "base", "custom_voice 0b6"])
def test_greedy_codes_through_the_kernels_equal_upstream(report, mode):
    got = report["greedy"][mode]
    assert got["kernels"], "FastTalker did not take the kernel path"
    assert got["frames"] >= 20 and got["ours"] == got["frames"]
    assert got["equal"] == got["frames"], f"first divergent frame: {got['first_divergent']}"


def test_cached_prompts_through_the_kernels_equal_upstream(report):
    # the voice's part from the prompt cache, the text's one position through the decode kernels
    got = report["greedy_cached"]
    assert got["kernels"] and got["cache hits"] == 1
    assert got["frames"] >= 5 and got["ours"] == got["frames"]
    assert got["equal"] == got["frames"], f"first divergent frame: {got['first_divergent']}"


def test_every_gemv_form_over_rows_matches_torch_row_by_row(report):
    got = report["rows_gemv"]
    assert any(" 3 rows " in case for case in got) and any("gathered" in case for case in got)
    for case, error in got.items():
        assert error < (1e-5 if case.startswith("float32") else 0.05), (case, error)


def test_attention_over_rows_equals_each_row_alone(report):
    for case, got in report["rows_attention"].items():
        assert got["error"] < 1e-6 and got["spare_row_kept"], (case, got)


def test_draws_over_rows_of_mixed_settings_equal_each_row_drawn_alone(report):
    got = report["rows_draws"]
    assert got["sub_same"] == got["talker_same"] == got["counters_same"] == got["draws"] >= 100, got
    assert got["distinct"] > 20, got  # the rows did sample
    assert got["input_error"] < 1e-6 and got["code0_written"], got
