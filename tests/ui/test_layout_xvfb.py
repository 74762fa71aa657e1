"""Real windows at the sizes a kiosk meets (a 7-inch 1024x600 panel, 1280x800, 1080p),
under Xvfb: the door screen in each state, the operator view, the locked PIN prompt,
every page of the enrollment wizard and the trials console must lie inside the screen,
each control unclipped by its parents and each text inside its label
(tests/ui/ui_layout_app.py looks; this test reads its report)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT, x_app_env, xvfb_display

SIZES = [(1024, 600), (1280, 800), (1920, 1080)]
DOOR_KINDS = {
    "starting": "starting",
    "idle": "idle",
    "hold": "hold",
    "hold-prompt": "hold",
    "welcome": "welcome",
    "welcome-long-name": "welcome",
    "welcome-two": "welcome",
    "not-recognised": "not_recognised",
    "not-live": "not_recognised",
    "camera-lost": "unavailable",
    "paused": "paused",
}


@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_window_fits_the_screen(
    width: int, height: int, shared: Callable[..., Path], tmp_path: Path
) -> None:
    with xvfb_display(width, height) as display:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.ui.ui_layout_app",
                str(tmp_path),
                str(shared("models")),
                str(shared("videos")),
            ],
            cwd=ROOT,
            env=x_app_env(display),
            capture_output=True,
            text=True,
            timeout=400,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["screen"] == [width, height]
    problems = {scene: found for scene, found in report["problems"].items() if found}
    assert not problems, json.dumps(problems, indent=2, ensure_ascii=False)
    expected_scenes = {f"door-{name}" for name in DOOR_KINDS} | {"operator-view", "pin-locked"}
    expected_scenes |= {"wizard-consent", "wizard-name-error", "wizard-capture-done"}
    expected_scenes |= {"wizard-review", "wizard-saved", "console-empty", "console-outcome"}
    expected_scenes |= {"console-many", "console-export-dialog"}
    assert expected_scenes <= set(report["problems"])

    door = report["door"]
    assert {name: state["kind"] for name, state in door.items()} == DOOR_KINDS
    assert [name for name, state in door.items() if state["door_open"]] == ["welcome"]
    assert door["welcome"]["texts"] == ["Welcome, Zoë Martin", "Door open"]
    assert door["not-live"]["texts"] == door["not-recognised"]["texts"]
    # The answer is big: at least 1/12 of the screen's height for a short one.
    assert door["welcome"]["headline_px"] >= height / 12
    assert report["pin_message"].startswith("Too many wrong PINs: the PIN is locked. Try again")
    assert report["overlay"] == "TP: Sam Twitchell-Hargreaves"
