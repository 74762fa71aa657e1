"""Run by tests/ui/test_ui_xvfb.py in a subprocess on a real X server (Xvfb): imports cv2
first, as the product does, enrolls the video's person into a fresh people store, opens
the full-screen kiosk window on the real live pipeline (`kiosk run`'s own
`start_pipeline`: detection, liveness, the store's gallery, tracking, the door event log)
playing the video, waits until the person is welcomed and the door opens, grabs the X
screen to door.png, then opens the operator view and grabs it to screen.png, and writes
what the test needs to check both.

    python -m tests.ui.ui_xvfb_app OUT_DIR VIDEO MODEL_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2  # first, on purpose: it points Qt at its own Qt5 plugins

CV2_SET = {
    name: os.environ.get(name, "") for name in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")
}


def main(out_dir: Path, video: Path, model_dir: Path) -> int:
    from PySide6.QtCore import QPoint

    from enroll.config import EnrollConfig
    from kiosk.config import EventsConfig, KioskConfig, LiveConfig, ModelsConfig, RecognizerConfig
    from kiosk.setup.pin import hash_pin
    from kiosk.ui import application
    from kiosk.ui.door import start_pipeline
    from kiosk.ui.main_window import KioskWindow
    from kiosk.ui.video_view import STATE_COLOURS
    from models.detector import FaceDetector
    from tests.helpers import enroll_from_video, wait_events

    detector = FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)
    enroll_from_video(out_dir / "people", "Ada Lovelace", video, detector)
    config = KioskConfig(
        models=ModelsConfig(dir=model_dir),
        kiosk=LiveConfig(loop=True),
        recognizer=RecognizerConfig(kind="embedding_gallery"),
        enroll=EnrollConfig(store_dir=out_dir / "people"),
        events=EventsConfig(dir=out_dir / "events"),
    )
    app = application()
    pipeline = start_pipeline(config, str(video))
    window = KioskWindow(pipeline, kiosk_mode=True, pin_hash=hash_pin("258014"), poll_ms=10)
    window.start()

    def named() -> bool:
        result = window.video.result
        return result is not None and any(
            t.state == "recognized" and t.label == "Ada Lovelace" for t in result.tracks
        )

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        window.isFullScreen() and named() and window.isActiveWindow() and window.door.door_is_open
    ):
        wait_events(20)
    window.poll_timer.stop()  # freeze the picture that is grabbed
    published = window.video.result
    assert published is not None and named(), "the enrolled person was never named"
    wait_events(300)  # let the X server show the last paint
    app.primaryScreen().grabWindow(0).save(str(out_dir / "door.png"))
    door = window.door
    door_report = {
        "texts": door.texts()[2:],  # after the clock and the date
        "answer": door.answer.kind,
        "door_open": door.door_is_open,
        "fits": all(
            label.text_fits() and not label.elided for label in (door.headline, door.clock)
        ),
        "band": [
            door.band.mapToGlobal(QPoint(0, 0)).y(),
            door.band.height(),
        ],
        "sign": [
            door.door_sign.mapToGlobal(QPoint(0, 0)).x(),
            door.door_sign.mapToGlobal(QPoint(0, 0)).y(),
            door.door_sign.width(),
            door.door_sign.height(),
        ],
    }
    window.show_operator_view()  # what the operator sees behind the PIN
    wait_events(300)
    shot = app.primaryScreen().grabWindow(0)
    shot.save(str(out_dir / "screen.png"))

    def global_rect(rect: object) -> list[int]:
        r = rect.toRect()  # type: ignore[attr-defined]
        top_left = window.video.mapToGlobal(QPoint(r.left(), r.top()))
        return [top_left.x(), top_left.y(), r.width(), r.height()]

    track = next(t for t in published.tracks if t.state == "recognized")
    colour = STATE_COLOURS[track.state]
    report = {
        "platform": app.platformName(),
        "cv2_set": CV2_SET,
        "left_in_env": {name: os.environ.get(name) for name in CV2_SET},
        "fullscreen": window.isFullScreen(),
        "window": [window.x(), window.y(), window.width(), window.height()],
        "screen": [shot.width(), shot.height()],
        "frame_rect": global_rect(window.video.frame_rect()),
        "box_rect": global_rect(window.video.map_box(track.box)),
        "box_pen": window.video.box_pen_width(),
        "box_rgb": list(colour.getRgb()[:3]),
        "status_rect": [
            window.status.mapToGlobal(QPoint(0, 0)).x(),
            window.status.mapToGlobal(QPoint(0, 0)).y(),
            window.status.width(),
            window.status.height(),
        ],
        "status_text": window.status.full_text(),
        "label": track.label,
        "door": door_report,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    window.shutdown()
    app.processEvents()
    pipeline.stop()
    return 0


if __name__ == "__main__":
    assert cv2.__version__
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
