"""The tests' fixtures, gathered from tests/support by concern: the sound server (pulse), per-test homes
and their hosts (homes), the model families and their tiny checkpoints (families), a scripted engine
host (scripted). Every test gets its own runtime and data directories, so its hosts and voices are its
own, and every host it started is stopped afterwards."""

import pytest

from tests.support.families import chatterbox_family, chatterbox_hub, qwen_family, qwen_hub, qwen_triton
from tests.support.homes import home, shared_home
from tests.support.pulse import pulse
from tests.support.scripted import scripted

__all__ = ["chatterbox_family", "chatterbox_hub", "home", "pulse", "qwen_family", "qwen_hub", "qwen_triton",
           "scripted", "shared_home"]


@pytest.fixture
def anyio_backend():
    return "asyncio"
