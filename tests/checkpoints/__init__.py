"""Tiny random-weight checkpoints in the published layouts, built by the tests and bench: the real
loading code runs on them where no weights can be downloaded. They run in a family venv:

    <family venv>/bin/python -m tests.checkpoints.qwen KIND OUT_DIR       (from the repository root)
    <family venv>/bin/python -m tests.checkpoints.chatterbox KIND OUT_DIR
"""
