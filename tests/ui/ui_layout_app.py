"""Run by tests/ui/test_layout_xvfb.py in a subprocess on a real X server (Xvfb) of one
size: shows the door screen in each of its states, the operator view, the PIN prompt
locked out, every page of the enrollment wizard and the trials console, on real frames
(real SCRFD boxes on a ../shared video; the wizard captures from the video itself), and
writes to OUT_DIR/report.json what is off screen, clipped or does not fit, per scene.

    python -m tests.ui.ui_layout_app OUT_DIR MODEL_DIR VIDEO_DIR [--shots]

``--shots`` also saves the X screen per scene as OUT_DIR/<scene>.png (ImageMagick's
``import -window root``), to look at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2  # first, on purpose, as the product does

LONG_NAME = "Maximilian Bartholomew Featherstonehaugh-Worthington"
NUMBERS_ON_THE_DOOR = set("0123456789%")


class Source:
    """A result source the scenes set by hand."""

    def __init__(self) -> None:
        self.result: Any = None
        self.notice = ""

    def latest(self) -> Any:
        return self.result

    def status(self) -> str:
        return self.notice


class FakePipeline(Source):
    """What the trials console needs of a pipeline."""

    on_result: Any = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def describe(widget: Any) -> str:
    name = widget.objectName() or ""
    text = ""
    for getter in ("full_text", "text", "title"):
        if hasattr(widget, getter):
            try:
                text = str(getattr(widget, getter)())[:40]
            except TypeError:
                continue
            break
    return f"{type(widget).__name__}{'#' + name if name else ''}({text!r})"


def in_scrolled_content(widget: Any, top: Any) -> bool:
    """Inside a scroll area's viewport: its contents scroll, clipping them is by design."""
    from PySide6.QtWidgets import QAbstractScrollArea

    parent = widget.parentWidget()
    while parent is not None and parent is not top:
        grand = parent.parentWidget()
        if isinstance(grand, QAbstractScrollArea) and grand.viewport() is parent:
            return True
        parent = grand
    return False


def layout_problems(top: Any, free: Any) -> list[str]:
    """What of ``top`` is off the screen's free area, clipped by its parents, or too
    small for its text."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtGui import QFontMetrics
    from PySide6.QtWidgets import QAbstractButton, QLabel, QWidget

    from kiosk.ui.fit_text import FitLabel

    problems = []
    frame = top.frameGeometry()
    if not free.contains(frame):
        problems.append(f"window {describe(top)} at {frame.getRect()} leaves {free.getRect()}")
    for widget in top.findChildren(QWidget):
        if not widget.isVisible() or widget.isWindow() or in_scrolled_content(widget, top):
            continue
        rect = QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())
        shown = QRect(rect)
        parent = widget.parentWidget()
        while parent is not None and parent is not top:
            shown = shown.intersected(QRect(parent.mapTo(top, QPoint(0, 0)), parent.size()))
            parent = parent.parentWidget()
        shown = shown.intersected(QRect(QPoint(0, 0), top.size()))
        if shown != rect and rect.width() > 0 and rect.height() > 0:
            problems.append(f"{describe(widget)} clipped: {rect.getRect()} shows {shown.getRect()}")
        if isinstance(widget, FitLabel):
            if widget.elided or not widget.text_fits():
                problems.append(f"{describe(widget)} does not fit {widget.contentsRect().size()}")
        elif isinstance(widget, QLabel) and widget.text() and widget.pixmap().isNull():
            area = widget.contentsRect()
            if widget.wordWrap():
                if widget.heightForWidth(area.width()) > widget.height() + 1:
                    problems.append(f"{describe(widget)} needs more height than {area.size()}")
            elif "<" not in widget.text():
                metrics = QFontMetrics(widget.font())
                shown = widget.text() if widget.buddy() is None else widget.text().replace("&", "")
                for line in shown.split("\n"):
                    if metrics.horizontalAdvance(line) > area.width() + 1:
                        problems.append(f"{describe(widget)} wider than {area.width()}")
        elif isinstance(widget, QAbstractButton) and widget.text():
            needed = widget.minimumSizeHint().width()
            if widget.width() + 1 < needed:
                problems.append(f"{describe(widget)} {widget.width()} px < {needed}")
    return problems


def geometry_of(widgets: dict[str, Any], top: Any) -> dict[str, list[int]]:
    from PySide6.QtCore import QPoint

    return {
        name: [*widget.mapTo(top, QPoint(0, 0)).toTuple(), widget.width(), widget.height()]
        for name, widget in widgets.items()
    }


def main(out: Path, model_dir: Path, videos: Path, shots: bool) -> int:
    import numpy as np
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QWizard

    from enroll.config import EnrollConfig
    from enroll.store import PeopleStore
    from kiosk.live.pipeline import PAUSED_NOTICE
    from kiosk.live.replay import video_frame_results
    from kiosk.live.starter import STARTING as STARTING_NOTICE
    from kiosk.setup.pin import hash_pin
    from kiosk.training import GalleryRefresh
    from kiosk.trials.session import TrialSession
    from kiosk.ui import application
    from kiosk.ui.main_window import KioskWindow
    from kiosk.ui.trials_window import TrialsWindow
    from kiosk.ui.wizard import EnrollWizard
    from models.detector import FaceDetector
    from models.embedder import ArcFaceEmbedder
    from models.recognition import Prediction
    from models.registry import model_path
    from tests.helpers import wait_events

    app = application()
    screen = app.primaryScreen()
    free = screen.availableGeometry()
    report: dict[str, Any] = {
        "screen": [screen.geometry().width(), screen.geometry().height()],
        "problems": {},
        "door": {},
    }

    def shoot(name: str) -> None:
        if shots:
            subprocess.run(["import", "-window", "root", str(out / f"{name}.png")], check=True)

    def scene(name: str, top: Any, extra: list[str] | None = None) -> None:
        # laid out (the geometry checked below) and, for a screenshot, painted on the X server
        wait_events(150 if shots else 30)
        report["problems"][name] = layout_problems(top, free) + (extra or [])
        shoot(name)

    detector = FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)
    video = videos / "solo_02.mp4"
    frames = video_frame_results(video, detector, 2, label="Zoë Martin", state="recognized")
    base = frames[1]
    assert base.tracks, f"SCRFD found no face in {video}"
    face = base.tracks[0]

    def with_tracks(*tracks: Any, **changes: Any) -> Any:
        return replace(base, tracks=tuple(tracks), **changes)

    # --- the door screen ----------------------------------------------------------------
    source = Source()
    window = KioskWindow(source, kiosk_mode=True, pin_hash=hash_pin("258046"), poll_ms=10)
    window.door_state.hold_s = window.door_state.welcome_hold_s = 0.0
    window.start()
    wait_events(300)
    h, w = base.frame.shape[:2]
    second = replace(face, track_id=2, box=(w * 0.05, h * 0.3, w * 0.3, h * 0.62))
    states = {
        "starting": (None, STARTING_NOTICE),
        "idle": (with_tracks(), ""),
        "hold": (with_tracks(replace(face, state="pending", label="Unknown")), ""),
        "hold-prompt": (
            with_tracks(
                replace(
                    face,
                    state="pending",
                    label="Unknown",
                    prompt="Please turn your head slightly to one side",
                )
            ),
            "",
        ),
        "welcome": (with_tracks(face, door_event_at=time.monotonic()), ""),
        "welcome-long-name": (with_tracks(replace(face, label=LONG_NAME)), ""),
        "welcome-two": (
            with_tracks(face, replace(second, label="Sam Twitchell", state="recognized")),
            "",
        ),
        "not-recognised": (with_tracks(replace(face, state="unknown", label="Unknown")), ""),
        "not-live": (with_tracks(replace(face, state="not_live", label="Unknown")), ""),
        "camera-lost": (with_tracks(face), "camera 0 lost, reconnecting in 4 s"),
        "paused": (with_tracks(), PAUSED_NOTICE),
    }
    for name, (result, notice) in states.items():
        source.result, source.notice = result, notice
        window.poll()
        extra = []
        if not window.isFullScreen() or window.geometry() != screen.geometry():
            extra.append(f"the kiosk window is {window.geometry().getRect()}, not full screen")
        public = window.door.texts()[2:]  # after the clock and the date
        if NUMBERS_ON_THE_DOOR & set("".join(public)):
            extra.append(f"numbers on the door screen: {public}")
        report["door"][name] = {
            "kind": window.door.answer.kind,
            "texts": public,
            "door_open": window.door.door_is_open,
            "headline_px": window.door.headline.font().pixelSize(),
        }
        scene(f"door-{name}", window, extra)

    # The operator view: the engineering numbers, behind the PIN in kiosk mode.
    source.result = with_tracks(
        replace(face, confidence=0.87),
        replace(second, label="Unknown", state="not_live", confidence=0.21),
        stage_ms={
            "decode": 2.1,
            "detect": 31.4,
            "align": 1.2,
            "classify": 35.3,
            "liveness": 12.8,
            "track": 0.4,
            "events": 0.1,
            "total": 81.2,
        },
        fps=11.9,
        dropped_frames=1234,
        providers=("CPUExecutionProvider",),
        notice="nobody is enrolled: every face is shown as unknown",
    )
    source.notice = ""
    window.show_operator_view()
    window.poll()
    scene("operator-view", window)
    window.show_door_screen()
    window.ask_pin(purpose="open the operator view")
    dialog = window.pin_dialog
    assert dialog is not None
    wait_events(200)
    for guess in ("1111", "2222", "3333"):
        QTest.keyClicks(dialog.pin_edit, guess)
        QTest.keyClick(dialog.pin_edit, Qt.Key.Key_Return)
    wait_events(300)
    locked = [] if dialog.isVisible() else ["the PIN prompt closed after the third wrong PIN"]
    if "locked" not in dialog.message.text():
        locked.append(f"the PIN prompt says {dialog.message.text()!r}")
    report["pin_message"] = dialog.message.text()
    scene("pin-locked", dialog, locked)
    dialog.reject()
    window.shutdown()
    wait_events(100)

    # --- the enrollment wizard --------------------------------------------------------
    capture = cv2.VideoCapture(str(video))

    def read() -> Any:  # on the wizard's capture thread
        ok, frame = capture.read()
        time.sleep(0.01)  # a camera's pace, roughly, without making the test slow
        return np.asarray(frame, dtype=np.uint8) if ok else None

    embedder = ArcFaceEmbedder(model_path("mobilefacenet_128d", model_dir))
    store = PeopleStore(Path(tempfile.mkdtemp(prefix="people-", dir=out)))
    config = EnrollConfig(photos=10, min_photos=5, yaw_target_deg=8.0)
    update = GalleryRefresh(store, embedder, threshold=0.5)
    wizard = EnrollWizard(store, config, read, detector, update)
    wizard.show()
    scene("wizard-consent", wizard)
    wizard.consent_page.agree.setChecked(True)
    wizard.next()
    wizard.name_page.name_edit.setText("../etc")
    wizard.next()
    scene("wizard-name-error", wizard)
    wizard.name_page.name_edit.setText("Zoë Martin")
    wizard.next()
    page = wizard.capture_page
    assert wizard.currentPage() is page, wizard.name_page.error.text()
    widths: set[int] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not page.session.done:
        wait_events(100)
        widths.add(page.guidance.width())
        if len(page.session.photos) >= 4 and "wizard-capture" not in report["problems"]:
            scene("wizard-capture", wizard)  # under way
    moved = [] if len(widths) == 1 else [f"the guidance moved: widths {sorted(widths)}"]
    scene("wizard-capture-done", wizard, moved)
    if not page.isComplete():
        report["problems"]["wizard-capture-done"].append("too few photos were taken")
    else:
        wizard.next()
        scene("wizard-review", wizard)
        wizard.next()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not wizard.save_page.isComplete():
            wait_events(100)
        finish = wizard.button(QWizard.WizardButton.FinishButton)
        scene("wizard-saved", wizard, [] if finish.isVisible() else ["no Finish button"])
    wizard.accept()
    capture.release()
    store.close()
    wait_events(100)

    # --- the trials console -----------------------------------------------------------
    clock = [1000.0]
    session = TrialSession(duration=5.0, threshold=0.5)
    for person in ("Zoë Martin", "Sam Twitchell-Hargreaves"):
        session.add_participant(person, enrolled=True)
    session.add_participant("Visitor from accounts", enrolled=False)
    session.add_participant("photo of Zoë Martin", enrolled=False, attack=True)
    pipeline = FakePipeline()
    pipeline.result = with_tracks(replace(face, confidence=0.91))
    console = TrialsWindow(
        pipeline,  # type: ignore[arg-type]
        session,
        liveness=True,
        clock=lambda: clock[0],
        poll_ms=20,
    )
    console.start()
    panel = console.panel
    watched = {
        "video": console.video,
        "roster": panel.roster,
        "start": panel.start_button,
        "export": panel.export_button,
        "countdown": panel.countdown_label,
        "message": panel.message,
        "tabs": panel.tabs,
        **{f"metric-{key}": label for key, label in panel.metric_labels.items()},
    }
    scene("console-empty", console)
    before = geometry_of(watched, console)
    crop = np.full((112, 112, 3), 120, dtype=np.uint8)

    def trial(row: int, answer: str | None, best: str, shot: str = "") -> Any:
        panel.roster.setCurrentRow(row)
        panel.start_trial()
        for _ in range(10):
            session.add_frame(clock[0], Prediction(answer, best, 0.93), face_crop=crop, live=True)
            clock[0] += 0.25
        if shot:
            wait_events(200)
            scene(shot, console)
        clock[0] += 3.0
        deadline = time.monotonic() + 5
        while session.active is not None and time.monotonic() < deadline:
            wait_events(20)

    trial(1, "Sam Twitchell-Hargreaves", "Sam Twitchell-Hargreaves", shot="console-running")
    wait_events(150)
    overlay = [] if console.overlay.text_fits() else ["the outcome overlay does not fit"]
    report["overlay"] = console.overlay_text()
    scene("console-outcome", console, overlay)
    for i in range(14):  # two-digit counts, rates that change
        trial(i % 4, None if i % 3 else "Zoë Martin", "Zoë Martin")
    panel.message.setText("a long message: " + "the export went to a folder far away " * 3)
    scene("console-many", console)
    after = geometry_of(watched, console)
    moved = [
        f"{name} moved {before[name]} -> {after[name]}"
        for name in before
        if before[name] != after[name]
    ]
    report["problems"]["console-many"] += moved

    def look_at_export_dialog() -> None:
        dialog = panel.export_dialog
        if dialog is None:
            QTimer.singleShot(50, look_at_export_dialog)
            return
        scene("console-export-dialog", dialog)
        dialog.reject()

    QTimer.singleShot(50, look_at_export_dialog)
    panel.export()
    panel.tabs.setCurrentIndex(1)
    scene("console-people", console)
    panel.tabs.setCurrentIndex(2)
    scene("console-confusion", console)
    report["console_geometry"] = after

    console.shutdown()
    console.close()
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    assert cv2.__version__
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    raise SystemExit(
        main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), "--shots" in sys.argv)
    )
