"""The public door screen and the operator view behind the PIN, offscreen with pytest-qt,
on real frames of ../shared/videos with real SCRFD boxes."""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from pytestqt.qtbot import QtBot

from kiosk.live.replay import ReplayResults, video_frame_results
from kiosk.live.results import FrameResult, TrackView
from kiosk.setup.pin import hash_pin
from kiosk.ui.chime import NOTE_S, RATE, DoorChime, chime_samples, write_chime
from kiosk.ui.main_window import OVERLAY_SHORTCUT, KioskWindow
from kiosk.ui.video_view import PUBLIC_COLOURS, STATE_COLOURS
from models.detector import FaceDetector

PIN = "471108"
NAME = "Ada Lovelace"
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


@pytest.fixture(scope="module")
def pin_hash() -> str:
    return hash_pin(PIN)


@pytest.fixture(scope="module")
def frames(shared: Callable[..., Path], detector: FaceDetector) -> list[FrameResult]:
    found = video_frame_results(shared("videos", "solo_01.mp4"), detector, 3, label=NAME)
    assert all(r.tracks for r in found), "SCRFD found no face in solo_01"
    return found


def _window(qtbot: QtBot, source: ReplayResults, **kwargs: object) -> KioskWindow:
    window = KioskWindow(source, **kwargs)  # type: ignore[arg-type]
    qtbot.addWidget(window, before_close_func=lambda w: w.shutdown())
    return window


def _near(image: QImage, x: float, y: float, colour: QColor, tol: int = 40) -> bool:
    pixel = image.pixelColor(round(x), round(y))
    return all(
        abs(a - b) <= tol for a, b in zip(pixel.getRgb()[:3], colour.getRgb()[:3], strict=True)
    )


def test_the_door_screen_welcomes_in_words_and_opens_the_door(
    qtbot: QtBot, frames: list[FrameResult], pin_hash: str
) -> None:
    opened = replace(frames[0], door_event_at=time.monotonic())
    source = ReplayResults([opened])
    window = _window(qtbot, source, kiosk_mode=True, pin_hash=pin_hash, door_open_s=0.6)
    window.start()
    qtbot.waitExposed(window)
    assert not window.operator_view_shown and window.pages.currentWidget() is window.door
    assert window.door.answer.kind == "starting"
    source.advance()
    qtbot.waitUntil(lambda: window.door.answer.kind == "welcome", timeout=2000)
    assert window.door.headline.full_text() == f"Welcome, {NAME}"
    assert window.door.headline.text_fits() and not window.door.headline.elided
    assert window.door.door_is_open and window.door.door_sign.isVisible()
    said = " ".join(window.door.texts()[2:])  # after the clock and the date
    assert said == f"Welcome, {NAME} Door open"
    assert window.chime is None  # the sound is off unless [ui] door_sound says otherwise

    # The picture is a mirror with a plain green box: no name tag, no confidence.
    window.door.video.repaint()
    image = window.door.video.grab().toImage()
    track = opened.tracks[0]
    box = window.door.video.map_box(track.box)
    frame_w = window.door.video.frame_rect().width()
    left = window.door.video.frame_rect().left()
    scale = frame_w / opened.frame.shape[1]
    assert box.left() == pytest.approx(left + (opened.frame.shape[1] - track.box[2]) * scale)
    green = PUBLIC_COLOURS["recognized"]
    edge = [(box.left(), box.top() + box.height() * t / 10) for t in range(3, 8)]
    edge += [(box.right(), box.top() + box.height() * t / 10) for t in range(3, 8)]
    assert sum(_near(image, x, y, green) for x, y in edge) >= 8
    tag = [(box.left() + 4 + i * 6, box.top() - 8) for i in range(8) if box.top() > 12]
    assert not any(_near(image, x, y, STATE_COLOURS["recognized"], 20) for x, y in tag)

    # The door closes by itself once its event is no longer fresh.
    qtbot.waitUntil(lambda: not window.door.door_is_open, timeout=3000)
    assert not window.door.door_sign.isVisible()
    assert window.door.answer.kind == "welcome"  # still in front of the camera
    window.shutdown()


@pytest.mark.parametrize(
    ("state", "kind", "headline"),
    [
        ("pending", "hold", "Hold still…"),
        ("unknown", "not_recognised", "Not recognised"),
        ("not_live", "not_recognised", "Not recognised"),
    ],
)
def test_undecided_strangers_and_photos_get_friendly_words(
    qtbot: QtBot, frames: list[FrameResult], state: str, kind: str, headline: str
) -> None:
    base = frames[1]
    shown = replace(base, tracks=(replace(base.tracks[0], state=state, label="Unknown"),))
    source = ReplayResults([shown])
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None)
    window.start()
    source.advance()
    qtbot.waitUntil(lambda: window.door.answer.kind == kind, timeout=2000)
    assert window.door.headline.full_text() == headline
    assert not window.door.door_is_open
    assert not set("".join(window.door.texts()[2:])) & set("0123456789%")
    window.shutdown()


def test_nobody_in_view_is_the_idle_screen_with_a_clock(
    qtbot: QtBot, frames: list[FrameResult]
) -> None:
    empty = replace(frames[2], tracks=())
    source = ReplayResults([empty])
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None)
    window.start()
    source.advance()
    qtbot.waitUntil(lambda: window.door.answer.kind == "idle", timeout=3000)
    assert window.door.headline.full_text() == "Please look at the camera"
    assert not window.door.detail.isVisible()  # one line, centred in the band
    clock = window.door.clock.full_text()
    assert len(clock) == 5 and clock[2] == ":" and window.door.clock.text_fits()
    window.shutdown()


@pytest.mark.parametrize("size", [(800, 480), (1024, 600), (1920, 1080)])
def test_the_answer_always_fits_without_eliding(
    qtbot: QtBot, frames: list[FrameResult], size: tuple[int, int]
) -> None:
    long = "Maximilian Bartholomew Featherstonehaugh-Worthington"
    shown = replace(frames[0], tracks=(replace(frames[0].tracks[0], label=long),))
    source = ReplayResults([shown])
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None)
    window.resize(*size)
    window.start()
    source.advance()
    qtbot.waitUntil(lambda: window.door.answer.kind == "welcome", timeout=2000)
    qtbot.wait(50)
    for label in (window.door.headline, window.door.clock, window.door.date):
        assert label.text_fits() and not label.elided, (size, label.full_text())
        assert label.geometry().right() < window.width()
    assert window.door.headline.font().pixelSize() >= 14
    window.shutdown()


def test_the_operator_view_is_behind_the_pin_in_kiosk_mode(
    qtbot: QtBot, frames: list[FrameResult], pin_hash: str
) -> None:
    source = ReplayResults(frames)
    window = _window(qtbot, source, kiosk_mode=True, pin_hash=pin_hash, poll_ms=5)
    window.start()
    qtbot.waitExposed(window)
    source.advance()
    qtbot.waitUntil(lambda: window.video.result is not None, timeout=2000)
    assert OVERLAY_SHORTCUT == "Ctrl+Shift+O"
    qtbot.keyClick(window, Qt.Key.Key_O, CTRL_SHIFT)
    dialog = window.pin_dialog
    assert dialog is not None and not window.operator_view_shown
    assert dialog.message.text() == "Enter the operator PIN to open the operator view."
    qtbot.keyClicks(dialog.pin_edit, "0000")
    qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    assert not window.operator_view_shown and dialog.isVisible()
    qtbot.keyClicks(dialog.pin_edit, PIN)
    qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.pin_dialog is None, timeout=2000)
    assert window.operator_view_shown and window.isVisible()  # the PIN did not close it
    assert window.video.isVisible() and window.status.isVisible()
    assert "FPS" in window.status.full_text() and window.status.text_fits()
    assert window.operator_timer.isActive()  # it gives the screen back by itself
    qtbot.keyClick(window, Qt.Key.Key_O, CTRL_SHIFT)  # back: no PIN needed
    assert not window.operator_view_shown and window.pin_dialog is None
    # Forgotten open, it returns to the door screen alone.
    window.show_operator_view()
    window.operator_timer.start(50)
    qtbot.waitUntil(lambda: not window.operator_view_shown, timeout=2000)
    window.shutdown()


def test_windowed_setup_switches_freely(qtbot: QtBot, frames: list[FrameResult]) -> None:
    window = _window(qtbot, ReplayResults(frames), kiosk_mode=False, pin_hash=None)
    window.start()
    qtbot.waitExposed(window)
    assert not window.operator_view_shown
    assert OVERLAY_SHORTCUT in window.windowTitle() and "door screen" in window.windowTitle()
    qtbot.keyClick(window, Qt.Key.Key_O, CTRL_SHIFT)
    assert window.operator_view_shown and window.pin_dialog is None
    assert "operator view" in window.windowTitle()
    assert not window.operator_timer.isActive()  # setup mode: it stays
    qtbot.keyClick(window, Qt.Key.Key_O, CTRL_SHIFT)
    assert not window.operator_view_shown
    window.shutdown()


def test_the_chime_sounds_once_per_door_event_and_never_fails(
    qtbot: QtBot, frames: list[FrameResult]
) -> None:
    now = time.monotonic()
    first = replace(frames[0], door_event_at=now)
    again = replace(frames[1], door_event_at=now)  # the same event, a later frame
    second = replace(frames[2], door_event_at=now + 0.1)
    source = ReplayResults([first, again, second])
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, door_sound=True)
    assert window.chime is not None
    window.start()
    for count in (1, 1, 2):
        source.advance()
        qtbot.wait(40)
        assert window.chimes == count
    window.shutdown()


def test_the_chime_is_two_soft_notes_and_plays_without_an_audio_device(
    qtbot: QtBot, tmp_path: Path
) -> None:
    samples = chime_samples()
    assert samples.dtype == np.int16 and len(samples) == 2 * round(NOTE_S * RATE)
    assert 0.3 * 32767 < np.abs(samples).max() <= 0.5 * 32767
    assert abs(int(samples[0])) < 200  # a soft attack: no click
    write_chime(tmp_path / "chime.wav")
    with wave.open(str(tmp_path / "chime.wav")) as read:
        assert (read.getnchannels(), read.getframerate()) == (1, RATE)
        assert read.getnframes() == len(samples)
    chime = DoorChime()
    assert chime.play() in ("effect", "beep", "")  # no audio device here: still no error
    chime.close()
    chime.close()  # twice is harmless


def test_the_operator_tag_tells_the_states_apart() -> None:
    from kiosk.ui.video_view import track_text

    states = ("recognized", "unknown", "pending", "not_live")
    views = {s: TrackView(1, (0.0, 0.0, 9.0, 9.0), "Zoë", 0.93, s) for s in states}  # type: ignore[arg-type]
    assert {s: track_text(v) for s, v in views.items()} == {
        "recognized": "Zoë  93%",
        "unknown": "Zoë  93%",  # the tracker labels a rejected track "Unknown" itself
        "pending": "deciding  93%",
        "not_live": "not live  93%",
    }
