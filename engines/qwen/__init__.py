"""The qwen family (Qwen3-TTS): runs in the qwen venv's engine host."""
