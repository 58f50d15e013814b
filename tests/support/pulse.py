"""A PulseAudio daemon of the tests' own with one null sink, and a recorder of what it plays."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SINK = "mcptts_test"


@pytest.fixture(scope="session")
def pulse():
    """A PulseAudio daemon of our own with one null sink; yields the environment that reaches it."""
    if not shutil.which("pulseaudio"):
        pytest.fail("pulseaudio is not installed: .ci/run installs it (apt-get install pulseaudio pulseaudio-utils)")
    runtime = Path(tempfile.mkdtemp(prefix="pa", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
           "HOME": os.environ.get("HOME", str(runtime))}
    env.pop("PULSE_SERVER", None)
    subprocess.run(["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit=no",
                    "-L", "module-native-protocol-unix", "-L", f"module-null-sink sink_name={SINK}",
                    "-L", "module-always-sink"], env=env, check=True, capture_output=True)
    server = f"unix:{runtime / 'pulse' / 'native'}"
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "--server", server, "info"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail("PulseAudio did not come up")
        time.sleep(0.1)
    subprocess.run(["pactl", "--server", server, "set-default-sink", SINK], check=True)
    yield {"PULSE_SERVER": server, "XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse")}
    subprocess.run(["pactl", "--server", server, "exit"], capture_output=True)
    shutil.rmtree(runtime, ignore_errors=True)


class Recorder:
    """Records the null sink's monitor with parecord, as a person's ear would hear the speaker."""

    def __init__(self, pulse: dict, path: Path) -> None:
        self.path = path
        self.process = subprocess.Popen(
            ["parecord", f"--server={pulse['PULSE_SERVER']}", f"--device={SINK}.monitor", "--file-format=wav",
             "--channels=1", "--rate=16000", "--format=s16le", str(path)],
            env={**os.environ, **pulse}, stderr=subprocess.PIPE)
        time.sleep(0.3)

    def stop(self):
        time.sleep(0.3)
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        data, rate = sf.read(self.path, dtype="float32")
        return np.asarray(data).reshape(-1), rate
