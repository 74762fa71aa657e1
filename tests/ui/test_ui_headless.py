"""The window's headless parts: PIN hashing and the gate, the [ui] config section,
`kiosk pin`, the cv2/Qt environment fix and the status line text."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from kiosk.cli import main
from kiosk.config import load_config
from kiosk.live.results import FrameResult, RecognizerInfo
from kiosk.setup.pin import PinGate, hash_pin, parse_pin_hash, verify_pin
from kiosk.ui import CV2_QT_VARIABLES, drop_cv2_qt_paths, has_display
from kiosk.ui.status import age_text, provider_label, status_text
from models.errors import UserError
from tests.helpers import skip_or_fail


def test_pin_hash_verifies_only_the_right_pin() -> None:
    stored = hash_pin("480259")
    assert "480259" not in stored
    assert verify_pin("480259", stored)
    assert not verify_pin("4712", stored)
    assert not verify_pin("", stored)
    assert hash_pin("480259") != stored  # salted


@pytest.mark.parametrize("pin", ["123", "12 34", "x" * 65])
def test_unacceptable_pins_are_refused(pin: str) -> None:
    with pytest.raises(UserError, match="operator PIN"):
        hash_pin(pin)


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ("480259", "never the PIN itself"),
        ("scrypt$16384$8$1$!!$!!", "damaged"),
        ("scrypt$1000$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "damaged"),  # n not 2**k
    ],
)
def test_bad_stored_hashes_are_explained(stored: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_pin_hash(stored)


def test_gate_locks_out_a_guesser_with_growing_delays() -> None:
    now = [100.0]
    gate = PinGate(hash_pin("480259"), free_attempts=3, first_lockout_s=5, clock=lambda: now[0])
    assert not gate.attempt("0000") and not gate.attempt("0001")
    assert gate.locked_for() == 0
    assert not gate.attempt("0002")  # third wrong: locked 5 s
    assert gate.locked_for() == pytest.approx(5)
    assert not gate.attempt("480259")  # refused unchecked while locked
    now[0] += 5
    assert not gate.attempt("0003")  # fourth wrong: locked 10 s
    assert gate.locked_for() == pytest.approx(10)
    now[0] += 10
    assert gate.attempt("480259")
    assert gate.failures == 0


def test_config_takes_a_pin_hash_and_never_echoes_a_plain_pin(tmp_path: Path) -> None:
    stored = hash_pin("480259")
    good = tmp_path / "good.toml"
    good.write_text(f'[ui]\noperator_pin = "{stored}"\npoll_ms = 20\n')
    config = load_config(good)
    assert config.ui.operator_pin == stored and config.ui.poll_ms == 20
    assert load_config(tmp_path / "good.toml").ui == config.ui
    plain = tmp_path / "plain.toml"
    plain.write_text('[ui]\noperator_pin = "918273"\n')
    with pytest.raises(UserError) as caught:
        load_config(plain)
    assert "ui.operator_pin" in str(caught.value)
    assert "kiosk pin" in str(caught.value)
    assert "918273" not in str(caught.value)


def test_default_config_has_no_pin() -> None:
    assert load_config().ui.operator_pin is None


def test_pin_command_prints_a_config_line_the_config_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "config.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("582046\n"))
    assert main(["pin", "--stdin", "--print", "--config", str(config_file)]) == 0
    captured = capsys.readouterr()
    assert "582046" not in captured.out and not config_file.exists()  # printed, not written
    assert f"put these lines in {config_file} " in captured.err and "under [ui]" in captured.err
    config_file.write_text(captured.out)
    stored = load_config(config_file).ui.operator_pin
    assert stored is not None and verify_pin("582046", stored)


def test_pin_command_writes_the_hash_into_the_config_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Into the file `kiosk run` reads: made if missing; [ui] added, or its operator_pin
    replaced, every other line (comments too) kept."""
    config_file = tmp_path / "conf" / "kiosk.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("582046\n"))
    assert main(["--config", str(config_file), "pin", "--stdin"]) == 0
    err = capsys.readouterr().err
    assert f"added [ui] operator_pin in {config_file} " in err and "582046" not in err
    first = load_config(config_file).ui.operator_pin
    assert first is not None and verify_pin("582046", first)
    body = (
        "# the lobby kiosk\n[ui]\npoll_ms = 20  # fast\n"
        f'operator_pin = "{first}"\n\n[kiosk]\nloop = true\n'
    )
    config_file.write_text(body)
    monkeypatch.setattr("sys.stdin", io.StringIO("730519\n"))
    assert main(["pin", "--stdin", "--config", str(config_file)]) == 0
    assert f"replaced [ui] operator_pin in {config_file} " in capsys.readouterr().err
    config = load_config(config_file)
    assert config.ui.operator_pin is not None and verify_pin("730519", config.ui.operator_pin)
    assert config.ui.poll_ms == 20 and config.kiosk.loop
    text = config_file.read_text()
    assert text.startswith("# the lobby kiosk\n[ui]\npoll_ms = 20  # fast\n") and first not in text
    # An inline [ui] table is not rewritten: the message names the file and the key.
    config_file.write_text("ui = { poll_ms = 20 }\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("730519\n"))
    assert main(["pin", "--stdin", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert f"put this line under [ui] in {config_file} by hand: operator_pin = " in err
    assert config_file.read_text() == "ui = { poll_ms = 20 }\n"


def test_pin_command_refuses_a_short_pin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("12\n"))
    assert main(["pin", "--stdin"]) == 2
    assert "kiosk: error: the operator PIN must have" in capsys.readouterr().err


def test_cv2_qt_variables_are_dropped_and_others_kept() -> None:
    import cv2

    cv2_dir = Path(cv2.__file__).resolve().parent
    env = {
        "QT_QPA_PLATFORM_PLUGIN_PATH": str(cv2_dir / "qt" / "plugins"),
        "QT_QPA_FONTDIR": str(cv2_dir / "qt" / "fonts"),
        "PATH": "/usr/bin",
    }
    assert drop_cv2_qt_paths(env) == list(CV2_QT_VARIABLES)
    assert env == {"PATH": "/usr/bin"}
    mine = {"QT_QPA_PLATFORM_PLUGIN_PATH": "/opt/qt6/plugins"}
    assert drop_cv2_qt_paths(mine) == []
    assert mine == {"QT_QPA_PLATFORM_PLUGIN_PATH": "/opt/qt6/plugins"}


def test_importing_cv2_really_sets_what_we_drop() -> None:
    """Guards the premise: if a cv2 release stops setting them, this says so."""
    import subprocess
    import sys

    code = "import cv2, os; print(os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH', ''))"
    env = {k: v for k, v in os.environ.items() if k not in CV2_QT_VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not out:
        skip_or_fail("this opencv build does not set Qt's variables (opencv-python does)")
    assert drop_cv2_qt_paths({"QT_QPA_PLATFORM_PLUGIN_PATH": out}) == [
        "QT_QPA_PLATFORM_PLUGIN_PATH"
    ]


def test_display_detection() -> None:
    if os.name == "nt":
        pytest.skip("always a display on Windows")
    assert not has_display({})
    assert has_display({"DISPLAY": ":0"})
    assert has_display({"QT_QPA_PLATFORM": "offscreen"})


def test_status_text_lists_fps_drops_stages_and_provider() -> None:
    result = FrameResult(
        frame_index=7,
        frame=np.zeros((4, 4, 3), np.uint8),
        captured_at=0.0,
        tracks=(),
        stage_ms={"detect": 9.04, "classify": 33.96},
        fps=17.25,
        dropped_frames=3,
        providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
    )
    assert status_text(result) == (
        "17.2 FPS · GPU (CUDA) · dropped 3\nms: detect 9.0 · classify 34.0"
    )
    noticed = replace(result, stage_ms={}, notice="nobody is enrolled")
    assert status_text(noticed) == (
        "17.2 FPS · GPU (CUDA) · dropped 3 · nobody is enrolled\nno stage timings"
    )
    trained = replace(
        result, recognizer=RecognizerInfo("clip", 7, people=3, update="retraining: about 20 s left")
    )
    assert status_text(trained).split("\n")[0] == (
        "17.2 FPS · GPU (CUDA) · dropped 3 · clip v7 · retraining: about 20 s left"
    )
    bundle = RecognizerInfo("clip", 8, trained_at="2026-12-02T10:00:00+00:00", people=3)
    at = datetime(2026, 12, 2, 10, 4, 30, tzinfo=UTC)
    assert status_text(replace(result, recognizer=bundle), at).split("\n")[0] == (
        "17.2 FPS · GPU (CUDA) · dropped 3 · clip v8, trained 4 min ago"
    )
    assert age_text("2026-12-02T10:00:00", datetime(2026, 12, 4, 11, tzinfo=UTC)) == (
        "trained 2 days ago"
    )
    assert age_text("2026-12-02T10:00:00+00:00", datetime(2026, 12, 2, 10, 0, 9, tzinfo=UTC)) == (
        "trained 9 s ago"
    )
    assert age_text("") == age_text("not a time") == ""
    assert status_text(None) == "waiting for the first frame"
    starting = "Starting… loading the models"
    assert status_text(None, notice=starting) == starting
    why = "The kiosk cannot start: there is no file or folder /x.mp4: give --source a camera"
    assert status_text(None, notice=why) == why.replace("file or", "file\nor")  # near the middle
    assert provider_label(("CPUExecutionProvider",)) == "CPU"
    assert provider_label(("FooExecutionProvider",)) == "Foo"
    assert provider_label(()) == "provider ?"
