"""The kiosk window in a REAL X window (Xvfb), after `import cv2`, on the real live pipeline:
the door screen must welcome the enrolled person by name in its green band with the door
sign lit, and the operator view's screenshot must show the video and the person's box
drawn where the window says it drew them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, x_app_env
from tests.helpers import xvfb_display as xvfb_display_at


@pytest.fixture
def xvfb_display() -> Iterator[str]:
    with xvfb_display_at(1280, 720) as display:
        yield display


def _near(pixel: np.ndarray, rgb: list[int], tol: int = 40) -> bool:
    return bool(np.all(np.abs(pixel[::-1].astype(int) - np.array(rgb)) <= tol))  # BGR


@pytest.mark.slow
def test_real_x_window_shows_video_and_face_box(
    xvfb_display: str, shared: Callable[..., Path], tmp_path: Path
) -> None:
    import cv2

    env = x_app_env(xvfb_display)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.ui.ui_xvfb_app",
            str(tmp_path),
            str(shared("videos", "solo_02.mp4")),
            str(shared("models")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["platform"] == "xcb"
    # cv2 did point Qt at its Qt5 plugins, and application() removed that.
    assert "cv2" in report["cv2_set"]["QT_QPA_PLATFORM_PLUGIN_PATH"]
    assert report["left_in_env"]["QT_QPA_PLATFORM_PLUGIN_PATH"] is None
    assert report["fullscreen"] and report["window"] == [0, 0, 1280, 720]

    # The door screen: the welcome in words on the green band, the door open, no numbers.
    door = report["door"]
    assert door["texts"] == ["Welcome, Ada Lovelace", "Door open"]
    assert door["answer"] == "welcome" and door["door_open"] and door["fits"]
    public = cv2.imread(str(tmp_path / "door.png"))
    band_y, band_h = door["band"]
    assert band_y + band_h == 720
    band = public[band_y + 4 : band_y + band_h - 4, ::16].reshape(-1, 3)
    assert np.mean([_near(p, [23, 117, 58]) for p in band]) > 0.6  # mostly the band's green
    assert (band.min(axis=1) > 200).sum() > 20  # with white letters on it
    sx, sy, sw, sh = door["sign"]
    sign = public[sy + 2 : sy + sh - 2, sx + sw // 2 : sx + sw - sh // 2].reshape(-1, 3)
    assert np.mean([_near(p, [0, 170, 70]) for p in sign]) > 0.3  # the lit door sign

    screen = cv2.imread(str(tmp_path / "screen.png"))
    assert screen.shape == (720, 1280, 3)

    # The video: many distinct colours inside the frame rectangle.
    fx, fy, fw, fh = report["frame_rect"]
    inside = screen[fy + fh // 10 : fy + fh * 9 // 10, fx + fw // 10 : fx + fw * 9 // 10]
    assert inside.std() > 20
    assert len(np.unique(inside.reshape(-1, 3)[::7], axis=0)) > 500
    # Letterbox bars beside a square video are the dark background.
    assert fx > 100 and np.abs(screen[fy + fh // 2, 10].astype(int) - [18, 16, 16]).max() <= 3

    # The face box: its colour all along the four edges, at the place the window reports.
    bx, by, bw, bh = report["box_rect"]
    assert bw > 40 and bh > 40
    colour = report["box_rgb"]
    edges = [(bx + bw * t // 20, by + bh) for t in range(2, 19)]  # bottom
    edges += [(bx, by + bh * t // 20) for t in range(4, 19)]  # left
    edges += [(bx + bw, by + bh * t // 20) for t in range(4, 19)]  # right
    hits = sum(_near(screen[y, x], colour) for x, y in edges)
    assert hits >= 0.9 * len(edges), f"{hits}/{len(edges)} box edge pixels in {colour}"
    # The label tag above the box is filled with that colour too.
    tag = screen[max(by - 10, 0) : by - 2, bx + 2 : bx + 20]
    assert np.mean([_near(p, colour) for p in tag.reshape(-1, 3)]) > 0.5
    # Inside the box it is the face, not the box colour.
    face = screen[by + bh // 4 : by + bh * 3 // 4, bx + bw // 4 : bx + bw * 3 // 4]
    assert np.mean([_near(p, colour, 20) for p in face.reshape(-1, 3)[::5]]) < 0.2

    # The status lines have text drawn on them.
    sx, sy, sw, sh = report["status_rect"]
    assert sy + sh == 720 and "FPS" in report["status_text"]
    assert "liveness" in report["status_text"] and report["label"] == "Ada Lovelace"
    status = screen[sy : sy + sh, sx : sx + sw // 2]
    assert (status.max(axis=2) > 120).sum() > 100
