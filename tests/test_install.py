"""`mcp-tts install`: a failed install leaves nothing that looks installed."""

from __future__ import annotations

import pytest

from mcp_tts import install
from mcp_tts.config import Settings
from mcp_tts.errors import TTSError
from mcp_tts.families import FAMILIES, interpreter


def test_a_failed_install_leaves_no_venv(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", torch_index_url="")
    broken = install.Recipe("qwen", "cpu", ("mcp-tts-no-such-package-anywhere==0.0.1",), "print('never')")
    monkeypatch.setattr(install, "recipe", lambda family, device: broken)
    lines: list[str] = []
    with pytest.raises(TTSError, match="failed"):
        install.install(settings, "qwen", "cpu", say=lines.append)
    family_dir = settings.families_dir / "qwen"
    assert not (family_dir / "venv").exists()
    assert not list(family_dir.glob("venv.partial-*"))
    assert interpreter(FAMILIES["qwen"], settings) is None
    assert any("installing" in line for line in lines)


def test_a_venv_whose_check_fails_is_not_installed(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    broken = install.Recipe("qwen", "cpu", ("pip",), "import a_module_that_is_not_there")
    monkeypatch.setattr(install, "recipe", lambda family, device: broken)
    with pytest.raises(TTSError, match="a_module_that_is_not_there"):
        install.install(settings, "qwen", "cpu", say=lambda line: None)
    assert interpreter(FAMILIES["qwen"], settings) is None
    assert not list((settings.families_dir / "qwen").iterdir())


def test_too_little_disk_space_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.setattr(install.Recipe, "disk_gb", property(lambda self: 1e9))  # a billion GB
    (settings.families_dir / "qwen" / ".venv.0badf00d.tmp").mkdir(parents=True)  # a killed install's
    lines: list[str] = []
    with pytest.raises(TTSError) as caught:
        install.install(settings, "qwen", "cpu", say=lines.append)
    message = str(caught.value)
    assert "not enough free disk space" in message
    assert str(settings.families_dir) in message and "GB free" in message and "MCP_TTS_FAMILIES_DIR" in message
    assert "Interrupted installs left .venv.0badf00d.tmp there" in message
    assert [p.name for p in (settings.families_dir / "qwen").iterdir()] == [".venv.0badf00d.tmp"]
    assert lines == []  # refused before a venv was started


def test_a_full_disk_during_the_install_is_named(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    full = install.Recipe("qwen", "cpu", ("pip",), "raise OSError(28, 'No space left on device')")
    monkeypatch.setattr(install, "recipe", lambda family, device: full)
    with pytest.raises(TTSError) as caught:
        install.install(settings, "qwen", "cpu", say=lambda line: None)
    message = str(caught.value)
    assert message.startswith("qwen: the disk ran out of space during the install")
    assert "needs about 3 GB" in message and "[Errno 28]" in message
    assert interpreter(FAMILIES["qwen"], settings) is None
    assert not list((settings.families_dir / "qwen").iterdir())


def test_builtin_and_unknown_families():
    settings = Settings()
    with pytest.raises(TTSError, match="needs no install"):
        install.install(settings, "builtin")
    with pytest.raises(TTSError, match="families to install: qwen, chatterbox"):
        install.recipe("festival", "cpu")


def test_a_reinstall_replaces_the_venv_whole_and_leaves_nothing_beside_it(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data", torch_index_url="")
    plan = install.Recipe("qwen", "cpu", ("pip",), "print('ok')")
    monkeypatch.setattr(install, "recipe", lambda family, device: plan)
    first = install.install(settings, "qwen", "cpu", say=lambda line: None)
    (first / "from-the-first-install").write_text("x")
    second = install.install(settings, "qwen", "cpu", force=True, say=lambda line: None)
    assert second == first and not (second / "from-the-first-install").exists()
    assert install.installed_recipe(settings, "qwen")["digest"] == plan.digest
    assert sorted(p.name for p in (settings.families_dir / "qwen").iterdir()) == ["venv"]
