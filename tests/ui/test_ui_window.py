"""The door-side window, offscreen with pytest-qt, fed real frames of ../shared/videos
with real SCRFD boxes (kiosk/detection_replay.py stands in for the live pipeline)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QImage, QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from kiosk.cli import main
from kiosk.live.replay import ReplayResults, video_frame_results
from kiosk.live.results import FrameResult, TrackView
from kiosk.setup.pin import hash_pin
from kiosk.ui.main_window import OPERATOR_SHORTCUT, KioskWindow, no_pin_message
from kiosk.ui.video_view import BANNER_TEXT, STATE_COLOURS
from models.detector import FaceDetector
from models.errors import UserError

PIN = "480259"


@pytest.fixture(scope="module")
def pin_hash() -> str:
    return hash_pin(PIN)


@pytest.fixture(scope="module")
def frames(shared: Callable[..., Path], detector: FaceDetector) -> list[FrameResult]:
    return video_frame_results(shared("videos", "solo_01.mp4"), detector, 6)


@pytest.fixture(autouse=True)
def _nothing_left_running() -> Iterator[None]:
    """After each test (and qtbot's clean-up): no new thread, no window, no poll timer."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left running: {left}"
    app = QApplication.instance()
    if isinstance(app, QApplication):
        shown = [w for w in app.topLevelWidgets() if w.isVisible()]
        assert not shown, f"windows left open: {shown}"
        polling = [
            w
            for w in app.topLevelWidgets()
            if isinstance(w, KioskWindow) and w.poll_timer.isActive()
        ]
        assert not polling, f"poll timers left running: {polling}"


def _window(qtbot: QtBot, source: ReplayResults, **kwargs: object) -> KioskWindow:
    window = KioskWindow(source, **kwargs)  # type: ignore[arg-type]
    # A locked window refuses qtbot's close: unlock it first, even when a test failed.
    qtbot.addWidget(window, before_close_func=lambda w: w.shutdown())
    return window


def _close_for_good(qtbot: QtBot, window: KioskWindow) -> None:
    window.shutdown()
    assert not window.isVisible()
    assert not window.poll_timer.isActive()


def _near(image: QImage, x: float, y: float, colour: QColor, tol: int = 40) -> bool:
    pixel = image.pixelColor(round(x), round(y))
    return all(
        abs(a - b) <= tol for a, b in zip(pixel.getRgb()[:3], colour.getRgb()[:3], strict=True)
    )


def _edge_hits(image: QImage, window: KioskWindow, track: TrackView) -> float:
    """Fraction of points along the box's four edges drawn in the state's colour."""
    rect = window.video.map_box(track.box)
    colour = STATE_COLOURS[track.state]
    points = [(rect.left() + rect.width() * t / 20, rect.bottom()) for t in range(2, 19)]
    points += [(rect.left(), rect.top() + rect.height() * t / 20) for t in range(4, 19)]
    points += [(rect.right(), rect.top() + rect.height() * t / 20) for t in range(4, 19)]
    return sum(_near(image, x, y, colour) for x, y in points) / len(points)


def test_window_draws_the_frame_boxes_and_labels(qtbot: QtBot, frames: list[FrameResult]) -> None:
    source = ReplayResults(frames)
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, poll_ms=5)
    window.resize(960, 600)
    window.start()
    window.show_operator_view()  # the engineering view (windowed: no PIN)
    qtbot.waitExposed(window)
    assert window.video.result is None
    published = source.advance()
    qtbot.waitUntil(lambda: window.video.result is published, timeout=2000)
    assert published.tracks, "SCRFD found no face in solo_01"
    image = window.video.grab().toImage()

    track = published.tracks[0]
    assert _edge_hits(image, window, track) > 0.9
    # Inside the frame area the video itself is drawn: many distinct colours.
    area = window.video.frame_rect()
    pixels = np.array(
        [
            image.pixelColor(
                round(area.left() + area.width() * i / 16),
                round(area.top() + area.height() * j / 16),
            ).getRgb()[:3]
            for i in range(1, 16)
            for j in range(1, 16)
        ]
    )
    assert len({tuple(p) for p in pixels}) > 100 and pixels.std() > 20
    # The letterbox bars are background, not video.
    if area.left() > 4:
        assert image.pixelColor(2, image.height() // 2).getRgb()[:3] == (16, 16, 18)

    # The next published frame replaces the drawing; an unchanged one is not redrawn.
    polls = source.polls
    qtbot.waitUntil(lambda: source.polls > polls + 3, timeout=2000)
    assert window.video.result is published
    second = source.advance()
    qtbot.waitUntil(lambda: window.video.result is second, timeout=2000)
    _close_for_good(qtbot, window)


def test_each_state_has_its_colour(qtbot: QtBot, frames: list[FrameResult]) -> None:
    base = frames[0]
    h, w = base.frame.shape[:2]
    states = ("recognized", "unknown", "pending", "not_live")
    tracks = tuple(
        TrackView(
            track_id=i,
            box=(w * (0.05 + 0.24 * i), h * 0.35, w * (0.22 + 0.24 * i), h * 0.75),
            label="Unknown" if state != "recognized" else "Grace Hopper",
            confidence=0.5 + 0.1 * i,
            state=state,
        )
        for i, state in enumerate(states)
    )
    result = FrameResult(
        frame_index=0, frame=base.frame, captured_at=base.captured_at, tracks=tracks
    )
    source = ReplayResults([result])
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, poll_ms=5)
    window.resize(1000, 640)
    window.start()
    window.show_operator_view()
    source.advance()
    qtbot.waitUntil(lambda: window.video.result is result, timeout=2000)
    image = window.video.grab().toImage()
    for track in tracks:
        assert _edge_hits(image, window, track) > 0.9, track.state
    _close_for_good(qtbot, window)


def test_status_line_and_source_status_are_shown(qtbot: QtBot, frames: list[FrameResult]) -> None:
    lost = FrameResult(
        frame_index=frames[1].frame_index,
        frame=frames[1].frame,
        captured_at=frames[1].captured_at,
        tracks=(),
        stage_ms={"decode": 1.5, "detect": 28.25},
        fps=12.5,
        dropped_frames=42,
        providers=("CPUExecutionProvider",),
        source_status="camera 0 lost, reconnecting in 4 s",
    )
    source = ReplayResults([frames[0], lost])
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, poll_ms=5)
    window.resize(960, 600)
    window.start()
    window.show_operator_view()
    source.advance()
    qtbot.waitUntil(lambda: window.video.result is frames[0], timeout=2000)
    assert "FPS" in window.status.text() and "detect" in window.status.text()
    assert "FPS · CPU · dropped" in window.status.text()
    before = window.video.grab().toImage()
    source.advance()
    qtbot.waitUntil(lambda: window.video.result is lost, timeout=2000)
    assert window.status.full_text() == (
        "12.5 FPS · CPU · dropped 42\nms: decode 1.5 · detect 28.2"
    )
    assert window.status.text_fits() and not window.status.elided  # neither line cut
    after = window.video.grab().toImage()
    band = [(x, y) for x in range(0, after.width(), 3) for y in range(0, after.height() // 6, 2)]
    banner_now = sum(_near(after, x, y, BANNER_TEXT, 60) for x, y in band)
    banner_before = sum(_near(before, x, y, BANNER_TEXT, 60) for x, y in band)
    assert banner_now > 50 and banner_now > 5 * banner_before
    _close_for_good(qtbot, window)


def test_a_stalled_pipeline_is_said_on_screen(
    qtbot: QtBot, frames: list[FrameResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kiosk.ui.main_window as main_window

    monkeypatch.setattr(main_window, "STALE_AFTER_S", 0.2)
    source = ReplayResults(frames)
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, poll_ms=5)
    window.start()
    source.advance()
    qtbot.waitUntil(lambda: window.video.result is not None, timeout=2000)
    qtbot.waitUntil(lambda: window.video.notice.startswith("no new frame"), timeout=2000)
    source.advance()
    qtbot.waitUntil(lambda: window.video.notice == "", timeout=2000)
    _close_for_good(qtbot, window)


def test_windowed_without_pin_closes_at_once(qtbot: QtBot, frames: list[FrameResult]) -> None:
    window = _window(qtbot, ReplayResults(frames), kiosk_mode=False, pin_hash=None)
    window.start()
    qtbot.waitExposed(window)
    assert window.poll_timer.isActive()
    assert window.close()
    assert not window.isVisible() and not window.poll_timer.isActive()


def test_fullscreen_refuses_to_start_without_a_pin(frames: list[FrameResult]) -> None:
    with pytest.raises(UserError, match="needs an operator PIN"):
        KioskWindow(ReplayResults(frames), kiosk_mode=True, pin_hash=None)


def test_kiosk_mode_is_fullscreen_frameless_on_top(
    qtbot: QtBot, frames: list[FrameResult], pin_hash: str
) -> None:
    window = _window(qtbot, ReplayResults(frames), kiosk_mode=True, pin_hash=pin_hash)
    window.start()
    qtbot.waitExposed(window)
    assert window.isFullScreen()
    flags = window.windowFlags()
    assert flags & Qt.WindowType.FramelessWindowHint
    assert flags & Qt.WindowType.WindowStaysOnTopHint
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.isVisible() and window.isFullScreen()
    # The operator shortcut asks for the PIN (it does not close by itself).
    assert QKeySequence(OPERATOR_SHORTCUT) == QKeySequence("Ctrl+Shift+Q")
    modifiers = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window, Qt.Key.Key_Q, modifiers)
    qtbot.waitUntil(lambda: window.pin_dialog is not None, timeout=2000)
    assert window.isVisible()
    window.pin_dialog.reject()
    qtbot.waitUntil(lambda: window.pin_dialog is None, timeout=2000)
    window.showNormal()  # something takes it out of full screen: it goes back
    qtbot.waitUntil(window.isFullScreen, timeout=2000)
    _close_for_good(qtbot, window)


def test_pin_gate_refuses_a_wrong_pin_and_closes_on_the_right_one(
    qtbot: QtBot, frames: list[FrameResult], pin_hash: str
) -> None:
    window = _window(qtbot, ReplayResults(frames), kiosk_mode=True, pin_hash=pin_hash)
    window.start()
    qtbot.waitExposed(window)

    assert not window.close()  # close button / Alt+F4: refused, the PIN prompt opens
    assert window.isVisible() and window.poll_timer.isActive()
    dialog = window.pin_dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    qtbot.keyClicks(dialog.pin_edit, "0000")
    qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    assert window.isVisible() and dialog.isVisible()
    assert dialog.message.text() == "Wrong PIN. Try again."
    assert dialog.pin_edit.text() == ""
    assert window.gate is not None and window.gate.failures == 1  # one Enter, one attempt

    dialog.reject()  # cancelled: still locked; closing asks again
    qtbot.waitUntil(lambda: window.pin_dialog is None, timeout=2000)
    assert window.isVisible()
    assert not window.close()
    dialog = window.pin_dialog
    assert dialog is not None
    qtbot.keyClicks(dialog.pin_edit, PIN)
    with qtbot.waitSignal(dialog.accepted, timeout=5000):
        qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2000)
    assert not window.poll_timer.isActive()
    assert not dialog.idle_timer.isActive() and not dialog.lock_timer.isActive()


def test_pin_dialog_shows_the_lockout(
    qtbot: QtBot, frames: list[FrameResult], pin_hash: str
) -> None:
    window = _window(qtbot, ReplayResults(frames), kiosk_mode=True, pin_hash=pin_hash)
    window.start()
    window.ask_pin()
    dialog = window.pin_dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    for count, guess in enumerate(("1111", "2222"), start=1):
        qtbot.keyClicks(dialog.pin_edit, guess)
        qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
        assert window.gate is not None and window.gate.failures == count
        assert dialog.message.text() == "Wrong PIN. Try again." and dialog.pin_edit.isEnabled()
    qtbot.keyClicks(dialog.pin_edit, "3333")
    qtbot.keyClick(dialog.pin_edit, Qt.Key.Key_Return)  # the last wrong PIN: it says so
    assert dialog.isVisible()
    assert dialog.message.text() == "Too many wrong PINs: the PIN is locked. Try again in 5 s."
    assert not dialog.pin_edit.isEnabled() and dialog.lock_timer.isActive()
    # Enter again while locked (the focus has left the disabled line edit): it used to
    # press Cancel and close the prompt without a word. Now it stays, and counts nothing.
    focused = QApplication.focusWidget()
    for _ in range(2):
        qtbot.keyClick(focused if focused is not None else dialog, Qt.Key.Key_Return)
    assert dialog.isVisible() and window.pin_dialog is dialog
    assert window.gate.failures == 3
    assert dialog.message.text().startswith("Too many wrong PINs: the PIN is locked.")
    dialog.reject()
    qtbot.waitUntil(lambda: window.pin_dialog is None, timeout=2000)
    assert not dialog.lock_timer.isActive() and not dialog.idle_timer.isActive()
    assert window.gate is not None and window.gate.locked_for() > 0  # reopening won't reset
    _close_for_good(qtbot, window)


def _dismiss_error_dialog_later(seen: list[str]) -> None:
    def dismiss() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.informativeText())
            box.accept()
        else:
            QTimer.singleShot(50, dismiss)

    QTimer.singleShot(50, dismiss)


def test_run_with_a_bad_config_shows_one_dialog_and_writes_stderr(
    qtbot: QtBot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[ui]\npoll_ms = 1\nbrightness = 3\n")
    seen: list[str] = []
    _dismiss_error_dialog_later(seen)
    assert main(["run", "--windowed", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kiosk: error: config file {config}: ")
    assert "'ui.poll_ms'" in err and "unknown key 'ui.brightness'" in err
    assert len(seen) == 1 and seen[0] in err


def test_run_fullscreen_without_pin_explains_itself(
    qtbot: QtBot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []
    _dismiss_error_dialog_later(seen)
    assert main(["run"]) == 2
    assert capsys.readouterr().err == f"kiosk: error: {no_pin_message()}\n"
    assert seen == [no_pin_message()]
    # The command suggested acts on the config file given.
    config = tmp_path / "door config.toml"
    config.write_text("")
    _dismiss_error_dialog_later(seen)
    assert main(["run", "--config", str(config)]) == 2
    assert f"set one with `kiosk --config '{config}' pin`" in capsys.readouterr().err


def test_window_survives_many_polls(qtbot: QtBot, frames: list[FrameResult]) -> None:
    """Each poll calls void Qt methods; PySide6 6.12.0 on Python 3.11 took a reference from
    None per call and aborted after a few thousand (pyproject.toml excludes it). 20 000
    polls is ~5 min at 66 Hz; None must keep its references."""
    import sys

    source = ReplayResults(frames)
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None)
    before = sys.getrefcount(None)
    for _ in range(20_000):
        source.advance()
        window.poll()
    assert window.video.result is not None
    assert sys.getrefcount(None) >= before - 1_000  # 6.12.0 lost more than 20 000


class _StartedReplay(ReplayResults):
    """A started 'pipeline' for `kiosk run`: publishes each frame once, records stop()."""

    stopped = False

    def latest(self) -> FrameResult | None:
        self.advance()
        return super().latest()

    def stop(self) -> None:
        self.stopped = True


def test_run_opens_the_window_on_the_pipeline_and_stops_it(
    qtbot: QtBot,
    frames: list[FrameResult],
    pin_hash: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import signal

    import kiosk.ui.door as door

    pipeline = _StartedReplay(frames)
    started: list[tuple[object, object]] = []

    def start(config: object, source: object) -> _StartedReplay:
        started.append((config, source))
        return pipeline

    monkeypatch.setattr(door, "start_pipeline", start)
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[ui]\noperator_pin = "{pin_hash}"\npoll_ms = 10\n'
        '[recognizer]\nkind = "embedding_gallery"\n'  # all its model files are in ../shared
    )
    seen: dict[str, object] = {}

    def look_then_stop() -> None:
        window = QApplication.activeWindow()
        if not isinstance(window, KioskWindow) or window.video.result is None:
            QTimer.singleShot(20, look_then_stop)
            return
        seen.update(fullscreen=window.isFullScreen(), status=window.status.text())
        assert not window.close()  # locked: the PIN prompt opens instead
        seen["prompt"] = window.pin_dialog is not None
        signal.raise_signal(signal.SIGTERM)  # the service manager stops the kiosk

    QTimer.singleShot(20, look_then_stop)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "--config", str(config), "--source", "solo_01.mp4"]) == 0
    assert started and started[0][1] == "solo_01.mp4"
    assert seen["fullscreen"] and seen["prompt"]
    assert "FPS" in str(seen["status"])
    assert pipeline.stopped
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_idle_pin_prompt_gives_up(qtbot: QtBot, pin_hash: str) -> None:
    from kiosk.setup.pin import PinGate
    from kiosk.ui.pin_dialog import PinDialog

    dialog = PinDialog(PinGate(pin_hash), idle_s=0.2)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.rejected, timeout=3000):
        dialog.open()
    assert not dialog.isVisible() and not dialog.idle_timer.isActive()


def test_ui_bench_writes_json(
    shared: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = tmp_path / "bench" / "ui.json"
    video = shared("videos", "solo_01.mp4")
    argv = ["bench", "ui", "--video", str(video), "--frames", "2", "--repeats", "4"]
    assert main([*argv, "--size", "640x360", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["window"] == "640x360" and run["draws"] == 4 and run["frame"] == "512x512"
    assert 0 < run["draw_ms_p50"] <= run["draw_ms_p95"]
    assert main([*argv, "--size", "big"]) == 2
    assert "--size must look like 1280x720" in capsys.readouterr().err


def test_the_sources_trouble_is_said_even_without_a_new_result(
    qtbot: QtBot, frames: list[FrameResult]
) -> None:
    source = ReplayResults(frames)
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, poll_ms=5)
    window.resize(960, 600)
    window.start()
    window.show_operator_view()
    qtbot.waitExposed(window)
    waiting = window.video.grab().toImage()
    source.source_status = "no camera at index 0, retrying in 2 s"  # before any frame
    qtbot.waitUntil(lambda: window.video.notice == source.source_status, timeout=2000)
    said = window.video.grab().toImage()
    assert said != waiting  # the centre text changed from "Waiting for video…"
    source.advance()
    qtbot.waitUntil(lambda: window.video.result is not None, timeout=2000)
    source.source_status = "camera 0 lost, reconnecting in 4 s"  # no new result comes
    qtbot.waitUntil(lambda: window.video.notice == source.source_status, timeout=2000)
    image = window.video.grab().toImage()
    band = [(x, y) for x in range(0, image.width(), 3) for y in range(0, image.height() // 6, 2)]
    assert sum(_near(image, x, y, BANNER_TEXT, 60) for x, y in band) > 50
    source.source_status = ""
    qtbot.waitUntil(lambda: window.video.notice == "", timeout=2000)
    _close_for_good(qtbot, window)


def test_a_long_message_before_the_first_frame_is_wrapped_inside_the_view(
    qtbot: QtBot, frames: list[FrameResult]
) -> None:
    """Why the kiosk cannot start is read whole: wrapped over lines, inside a margin, never
    cut off at both edges of the video area."""
    source = ReplayResults(frames)
    source.source_status = (
        "The kiosk cannot start: there is no file or folder /media/usb/lobby-camera-test.mp4: "
        "give --source (or [kiosk] source) a camera index such as 0, an existing video file "
        "or image folder, or a stream URL (rtsp://...)"
    )
    window = _window(qtbot, source, kiosk_mode=False, pin_hash=None, poll_ms=5)
    window.resize(1024, 600)  # the smallest kiosk panel
    window.start()
    window.show_operator_view()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.video.notice == source.source_status, timeout=2000)
    image = window.video.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    rows = np.frombuffer(image.constBits(), np.uint8, image.bytesPerLine() * height)
    rgb = rows.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3)
    text = rgb.astype(int).sum(axis=2) > 300  # the light grey text on the dark background
    columns = np.flatnonzero(text.any(axis=0))
    lines = np.flatnonzero(text.any(axis=1))
    assert columns.size and columns.min() >= width * 0.04 and columns.max() <= width * 0.96
    font_px = max(12, round(height / 18))
    assert lines.max() - lines.min() > 2 * font_px  # three lines or more, not one cut line
    shown = window.status.full_text()  # the status lines say it too, over both lines
    assert shown.replace("\n", " ") == source.source_status and shown.count("\n") == 1
    assert not window.status.elided
    _close_for_good(qtbot, window)
