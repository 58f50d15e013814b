"""The fast T3 decode (engines/chatterbox/fast_t3.py) against upstream's own T3, in the chatterbox family venv,
on identical weights (CPU, float32: the same step as on the GPU, without graph capture)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

CHECK = "tests.checks.chatterbox_fast"  # run as a module from the repository root, in the family venv
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(900)  # one family-venv process, 2-3 minutes on 2 shared cores


@pytest.fixture(scope="module")
def report(chatterbox_family) -> dict:
    result = subprocess.run([str(chatterbox_family), "-m", CHECK], cwd=REPO, capture_output=True, text=True,
                            timeout=840)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["standard_cfg", "standard_unguided", "turbo"])
def test_deterministic_tokens_equal_upstreams_token_by_token(report, case):
    got = report[case]
    assert len(got["upstream"]) >= 40 and got["ours"] == got["upstream"]
    assert len(set(got["ours"])) > 20  # a real sequence, not one token repeated


def test_the_stop_token_ends_both_loops_at_the_same_place(report):
    got = report["stop"]
    assert got["ours"] == got["upstream"] and got["ours"][-1] == 6562 and len(got["ours"]) == 4


@pytest.mark.parametrize("kind", ["standard", "turbo"])
def test_processed_distribution_equals_upstreams_and_draws_follow_it(report, kind):
    got = report["distribution"][kind]
    assert got["support"] >= 5 and got["support_equal"]  # the filters removed some tokens, the same ones
    assert got["max_prob_diff"] < 1e-6 and got["outside_support"] == 0
    assert got["chi2_p"] > 1e-3 and got["cells"] >= 5  # 40,000 draws, a fixed seed: not flaky


def test_sampled_sequences_follow_upstreams_distribution(report):
    got = report["sequences"]
    for position in ("token0", "token1"):
        assert got[position]["distinct"] >= 10 and got[position]["chi2_p"] > 1e-3
    assert got["same_seed_equal"] == got["same_seed_runs"]  # the same seed draws the same tokens on the CPU
