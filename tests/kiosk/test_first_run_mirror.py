"""A first run into an empty kiosk home, from a site mirror on 127.0.0.1 (the real
downloader): what `kiosk run`, `kiosk models fetch` and `kiosk doctor` print, and that
every command they print as a fix works."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.config import KioskConfig
from kiosk.setup.first_run import needed_models
from models import registry
from models.errors import UserError
from tests.helpers import ServedBase, mirror_routes, no_internet, serve_routes

# The MobileFaceNet gallery's files, all in ../shared. The default recognizer, CLIP,
# needs RN50.pt instead of MobileFaceNet, which no machine here has: its first run is
# checked up to that file (test_the_default_first_run_offline_names_what_is_left).
CONFIG = '[recognizer]\nkind = "embedding_gallery"\n'
FILES = ["scrfd_2.5g", "mobilefacenet_128d", "minifasnet_v2", "minifasnet_v1se"]
DEFAULT = ["scrfd_2.5g", "clip_rn50_openai", "minifasnet_v2", "minifasnet_v1se"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    no_internet(monkeypatch)


@pytest.fixture
def mirror(model_dir: Path) -> Iterator[ServedBase]:
    with serve_routes(mirror_routes("/kiosk-models")) as base:
        yield base


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: ServedBase) -> Path:
    """An empty $KIOSK_HOME whose config.toml points at the mirror; no screen, no terminal."""
    home = tmp_path / "kiosk home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[models]\nmirror = "{mirror}/kiosk-models"\n{CONFIG}', encoding="utf-8"
    )
    monkeypatch.setenv("KIOSK_HOME", str(home))
    monkeypatch.delenv("KIOSK_MODEL_DIR")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.stdin", _NoTerminal())
    return home


class _NoTerminal:
    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        raise AssertionError("asked on a stdin that is not a terminal")


def _kiosk(command: str) -> int:
    """Run a printed `kiosk ...` command line in this process."""
    words = shlex.split(command)
    assert words[0] == "kiosk", command
    return main(words[1:])


def _no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kiosk run` gets past the first run, then stops where the window would open."""

    def application() -> None:
        raise UserError("test: the window would open here")

    monkeypatch.setattr("kiosk.ui.application", application)


def test_the_files_are_those_of_the_gallery_and_the_default() -> None:
    gallery = KioskConfig.model_validate({"recognizer": {"kind": "embedding_gallery"}})
    assert needed_models(gallery) == FILES
    assert needed_models(KioskConfig()) == DEFAULT


def test_the_default_first_run_offline_names_what_is_left(
    home: Path, mirror: ServedBase, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default (CLIP) config from a mirror without RN50.pt, on a site without internet:
    the three files the mirror has are fetched, RN50.pt's error says where to put it."""
    (home / "config.toml").write_text(f'[models]\nmirror = "{mirror}/kiosk-models"\n')
    assert main(["models", "fetch", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "RN50.pt (clip_rn50_openai, 255.8 MB): missing" in err
    rn50 = registry.spec("clip_rn50_openai")
    assert f"site mirror {mirror}/kiosk-models/RN50.pt: HTTP Error 404" in err
    assert f"public address {rn50.url}: <urlopen error no internet here" in err
    assert f"put RN50.pt (sha256 {rn50.sha256}) in {home / 'models'}" in err
    assert sorted(p.name for p in (home / "models").iterdir()) == sorted(
        registry.spec(n).file for n in DEFAULT if n != "clip_rn50_openai"
    )


def test_models_fetch_yes_then_doctor_passes(
    home: Path, mirror: ServedBase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "fetch", "--yes"]) == 0
    captured = capsys.readouterr()
    assert f"all needed files are in {home / 'models'}" in captured.out
    for name in FILES:  # each with its progress bar, from the mirror
        assert f"{name}: ok" in captured.err
        assert f"{mirror}/kiosk-models/{registry.spec(name).file} (site mirror)" in captured.err
    assert "#" * 30 in captured.err and "100%" in captured.err
    assert "GPL-3.0" in captured.err  # MobileFaceNet's licence, shown before it is fetched
    assert sorted(mirror.served) == sorted(f"/kiosk-models/{registry.spec(n).file}" for n in FILES)
    assert sorted(p.name for p in (home / "models").iterdir()) == sorted(
        registry.spec(n).file for n in FILES
    )
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["can_run"] is True
    assert not [p for p in report["problems"] if p["section"] == "models"]
    states = {row["name"]: row["state"] for row in report["checks"]["models"]["files"]}
    assert all(states[name] == "ok" for name in FILES)
    assert report["checks"]["paths"]["config_file"] == str(home / "config.toml")


def test_every_fix_the_doctor_prints_works(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 1
    table = capsys.readouterr().out
    assert "the kiosk cannot run" in table
    fixes = re.findall(r"^\s+fix: (kiosk .+)$", table, flags=re.MULTILINE)
    assert sorted(fixes) == sorted(f"kiosk models fetch {name}" for name in FILES)
    for fix in fixes:
        assert _kiosk(fix) == 0, fix
    capsys.readouterr()
    assert main(["doctor"]) == 0
    table = capsys.readouterr().out
    assert "fix: kiosk" not in table and table.rstrip().splitlines()[-1].startswith("ready")


def test_every_command_the_first_run_prints_works(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_window(monkeypatch)
    assert main(["--home", str(home), "run", "--windowed"]) == 2
    err = capsys.readouterr().err
    for name in FILES:
        model = registry.spec(name)
        assert f"{model.file} ({name}, {model.size / 1e6:.1f} MB): missing" in err  # type: ignore[operator]
    prefix = shlex.join(["kiosk", "--home", str(home)])
    commands = re.findall(r"`([^`]+)`", err.split("There is no terminal")[-1])
    assert commands == [
        f"{prefix} models fetch {' '.join(FILES)}",
        f"{prefix} run --windowed --yes",
    ]
    # The second downloads and starts the kiosk: it reaches the window.
    assert _kiosk(commands[1]) == 2
    assert "test: the window would open here" in capsys.readouterr().err
    assert all(r.status == "ok" for r in registry.verify_all(home / "models", FILES))
    for path in (home / "models").iterdir():  # the first command, on its own
        path.unlink()
    assert _kiosk(commands[0]) == 0


def test_a_corrupt_file_is_called_corrupt_and_its_fix_replaces_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "fetch", "--yes"]) == 0
    broken = home / "models" / "minifasnet_v2.onnx"
    broken.write_bytes(broken.read_bytes()[:1000])  # a copy cut short
    capsys.readouterr()
    _no_window(monkeypatch)
    assert main(["run", "--windowed"]) == 2
    err = capsys.readouterr().err
    assert "minifasnet_v2.onnx (minifasnet_v2, 1.7 MB): corrupt" in err
    assert "missing" not in err
    assert "run `kiosk models fetch minifasnet_v2`" in err
    assert main(["doctor"]) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if "minifasnet_v2 " in line)
    assert row.split()[0] == "error" and "is corrupt" in row
    assert "fix: kiosk models fetch minifasnet_v2" in table
    assert _kiosk("kiosk models fetch minifasnet_v2") == 0
    assert registry.sha256_file(broken) == registry.spec("minifasnet_v2").sha256
    assert main(["run", "--windowed"]) == 2  # now past the first run
    assert "test: the window would open here" in capsys.readouterr().err


def test_the_no_terminal_dialog_lists_every_missing_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []
    monkeypatch.setattr("kiosk.ui.has_display", lambda: True)
    monkeypatch.setattr("kiosk.ui.show_error_dialog", shown.append)
    assert main(["run", "--windowed"]) == 2
    assert len(shown) == 1
    for name in FILES:
        assert f"{registry.spec(name).file} ({name}," in shown[0]
    assert f"kiosk models fetch {' '.join(FILES)}" in shown[0]
    assert not (home / "models").exists()  # nothing was downloaded without asking
