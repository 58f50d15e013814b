"""What a family host says when a published checkpoint is not on this machine, and how to get it.

Runs in the qwen and chatterbox hosts (their family venvs hold huggingface_hub)."""

from __future__ import annotations

import os

from ..contract.catalog import BACKENDS


def missing_checkpoint(backend: str, model_id: str, error: BaseException) -> str:
    """`model_id` (a hub id) is neither in the Hugging Face cache nor downloadable now (`error`, from
    huggingface_hub): the command that fetches it, the local-directory way, and the offline setting only
    where this host's environment sets it."""
    from huggingface_hub import constants

    spec = BACKENDS.get(backend)
    download = f"mcp-tts download {backend}" + ("" if spec and model_id == spec.models[0] else f" --model {model_id}")
    offline = os.environ.get("HF_HUB_OFFLINE")
    if constants.HF_HUB_OFFLINE:
        why = (f"HF_HUB_OFFLINE={offline} in this engine host's environment keeps it from downloading; unset it "
               f"where the server starts (then `mcp-tts hosts stop`), or")
    else:
        cause = error.__cause__ or error.__context__
        why = (f"it could not be downloaded from {constants.ENDPOINT}"
               f"{f' ({type(cause).__name__})' if cause is not None else ''};")
    return (f"{model_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why} fetch it once with "
            f"`{download}`, or use a local checkpoint directory: -m DIR (MCP_TTS_MODEL=DIR for the server)")
