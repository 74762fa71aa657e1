"""One setting moves data, cache and config together: $KIOSK_HOME, or `kiosk --home DIR`;
the individual settings still win."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from enroll.store import default_store_dir
from kiosk.build import bundle_path
from kiosk.cli import main
from kiosk.config import KioskConfig, config_path, default_config_path, load_config
from models import paths, registry


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model dir from the environment (the tests' default points at ../shared)."""
    monkeypatch.delenv("KIOSK_MODEL_DIR")


def test_kiosk_home_moves_data_cache_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare: None
) -> None:
    before = (paths.user_data_dir(), paths.user_cache_dir(), paths.user_config_dir())
    assert all(tmp_path not in p.parents for p in before)
    monkeypatch.setenv("KIOSK_HOME", str(tmp_path / "kiosk"))
    assert paths.user_data_dir() == tmp_path / "kiosk"
    assert paths.user_cache_dir() == tmp_path / "kiosk" / "cache"
    assert paths.user_config_dir() == tmp_path / "kiosk"
    assert default_config_path() == config_path() == tmp_path / "kiosk" / "config.toml"
    assert registry.resolve_model_dir(None) == tmp_path / "kiosk" / "models"
    assert default_store_dir() == tmp_path / "kiosk" / "people"
    assert bundle_path(KioskConfig()) == tmp_path / "kiosk" / "recognizer.bundle"
    monkeypatch.setenv("KIOSK_HOME", "")  # empty is unset
    assert (paths.user_data_dir(), paths.user_cache_dir(), paths.user_config_dir()) == before


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KIOSK_HOME", "site")
    assert paths.user_data_dir() == tmp_path / "site"


def test_the_individual_settings_still_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare: None
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[detector]\nname = "yunet"\n', encoding="utf-8")
    monkeypatch.setenv("KIOSK_HOME", str(home))
    assert load_config().detector.name == "yunet"  # the home's config file is read
    other = tmp_path / "other.toml"
    other.write_text('[detector]\nname = "scrfd_0.5g"\n', encoding="utf-8")
    monkeypatch.setenv("KIOSK_CONFIG", str(other))
    assert load_config().detector.name == "scrfd_0.5g"
    monkeypatch.delenv("KIOSK_CONFIG")
    assert registry.resolve_model_dir(tmp_path / "m") == tmp_path / "m"
    monkeypatch.setenv("KIOSK_MODEL_DIR", str(tmp_path / "env-models"))
    assert registry.resolve_model_dir(None) == tmp_path / "env-models"
    config = KioskConfig.model_validate(
        {"enroll": {"store_dir": str(tmp_path / "people")}, "recognizer": {"kind": "clip"}}
    )
    assert (config.enroll.store_dir or default_store_dir()) == tmp_path / "people"


@pytest.mark.shared  # the doctor loads onnxruntime
def test_home_option_sets_it_for_the_command_and_the_doctor_shows_the_paths(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bare: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "var-lib-kiosk"
    main(["--home", str(home), "doctor", "--json"])
    assert os.environ["KIOSK_HOME"] == str(home)  # child processes (hooks) inherit it
    report = json.loads(capsys.readouterr().out)
    assert report["checks"]["paths"] == {
        "home": str(home),
        "data": str(home),
        "cache": str(home / "cache"),
        "config_dir": str(home),
        "config_file": str(home / "config.toml"),
        "config_file_exists": False,
        "models": str(home / "models"),
    }
    assert report["checks"]["models"]["dir"] == str(home / "models")
    main(["--home", str(home), "doctor"])
    table = capsys.readouterr().out
    section = table.split("\npaths\n", 1)[1]
    assert re.search(rf"ok +data +{re.escape(str(home))} \(", section)
    assert re.search(rf"ok +cache +{re.escape(str(home / 'cache'))}\n", section)
    assert re.search(rf"ok +config +{re.escape(str(home / 'config.toml'))} \(not present", section)
    # Fixes carry the --home: they act on the same folder.
    assert f"fix: kiosk --home {home} models fetch scrfd_2.5g" in table
