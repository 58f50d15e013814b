"""What agents send, at three lengths: the texts of the first-audio benchmarks."""

SENTENCE = "The build finished and all tests pass."
PARAGRAPH = ("I refactored the configuration loader so that it reads the environment once at startup. "
             "The parser now rejects unknown keys with a clear message, and the defaults live in one "
             "place. I also added tests for the three failure cases you mentioned, and all of them pass. "
             "The only open question is whether the old file format should still be accepted; for now "
             "it is, with a deprecation warning.")
MESSAGE = """## Summary

Fixed the flaky test in `tests/test_scheduler.py` and cleaned up the retry logic in
`src/scheduler/retry_policy.py`. All **412 tests** pass now ✅ (was 409/412).

### What changed
- `RetryPolicy.next_delay()` used `time.time()`; it now takes the clock as a parameter, so tests control it.
- The backoff cap moved from 30s to `MAX_BACKOFF_SECONDS` (default 60).
- Removed the unused helper `compute_jitter_v2` and its 3 call sites.
- Bumped `httpx` from v0.27.0 to v0.28.1; see https://github.com/encode/httpx/releases for the notes.

### Timing
| suite | before | after |
|---|---|---|
| unit | 41s | 38s |
| integration | 3m 10s | 2m 55s |

```python
def next_delay(self, attempt: int, now: Callable[[], float]) -> float:
    base = min(self.cap, self.base * 2 ** attempt)
    return base * (0.5 + self.rng.random() / 2)
```

### Next steps
1. Watch the nightly run for a week; the flake showed up roughly once in 40 runs.
2. If it stays green, drop the `@pytest.mark.flaky` marker from `test_retry_after_timeout`.
3. Consider moving the scheduler's config into `pyproject.toml` under `[tool.scheduler]`.

### Notes on the flake
The failure only happened when the retry fired within the same millisecond as the timeout; the test
then saw two attempts instead of one. With the injected clock the order is fixed, and I ran the test
500 times locally without a failure (about 4 minutes). I also checked the Windows job: it uses the
same code path, so no separate fix is needed there. One more thing: the retry counter in the metrics
exporter was off by one for the same reason, so the dashboards showed one retry too many per timeout.
That is fixed too, in the same commit, with a test that counts the exported retries after a timeout.

Let me know if you want the old behaviour behind a flag, e.g. `SCHEDULER_LEGACY_RETRY=1`, during the transition.
The whole change is about 180 lines, mostly tests, and the diff is in PR #1287 for review when you have a moment.
"""
TEXTS = {"1 sentence": SENTENCE, "paragraph": PARAGRAPH, "2,000-char message": MESSAGE}
