"""`kiosk enroll`: the enrollment wizard on its own, on a camera or a video file.

With ``auto`` (a name) the wizard plays the volunteer and the operator (agrees, types
the name, accepts every photo) and reports how long each step took: the benchmark.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.build import with_store
from kiosk.config import KioskConfig
from kiosk.live.sources import FrameSource, LiveCaptureSource, open_source
from models.errors import UserError


def open_enroll_source(spec: str) -> FrameSource:
    """The camera (it must open now: a volunteer is waiting) or a video at its own pace."""
    source = open_source(spec, realtime=True)
    if isinstance(source, LiveCaptureSource):
        first = source.read()  # opens the camera; the frame itself is not needed
        if first is None:
            source.close()
            raise UserError(
                f"{source.description} cannot be opened: is it plugged in and free? "
                "(--source FILE uses a video instead)"
            )
    return source


@dataclass(frozen=True)
class EnrollmentRun:
    result: int  # the wizard's exit code (0: closed normally)
    enrolled: bool  # someone was saved and the gallery rebuilt
    report: dict[str, Any] | None  # with ``auto``: the step timings


def run_enrollment(
    config: KioskConfig, source_spec: str, *, store_dir: Path | None = None, auto: str | None = None
) -> EnrollmentRun:
    """Show the wizard on ``source_spec`` until it closes, saving to the people store
    (``store_dir`` overrides ``[enroll] store_dir``)."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    enroll_config = with_store(config, store_dir).enroll

    from kiosk.setup.site import people_store
    from kiosk.training import recognizer_update
    from kiosk.ui import application
    from kiosk.ui.enrollment import enrollment_detector, frame_reader
    from kiosk.ui.wizard import Disclosure, EnrollWizard, drive_automatically

    app = application()
    detector = enrollment_detector(config)
    source = open_enroll_source(source_spec)
    timings["load_models_s"] = time.monotonic() - started
    # On a site, the replica: the new person reaches the registry when the wizard closes.
    with people_store(config, enroll_config.store_dir) as store:
        wizard = EnrollWizard(
            store,
            enroll_config,
            lambda: frame_reader(source),
            detector,
            recognizer_update(config, store),
            disclosure=Disclosure.of(config),
        )
        driven = drive_automatically(wizard, auto, source, timings) if auto is not None else None
        wizard.show()
        result = app.exec()
        source.close()
        enrolled = wizard.saved_person is not None
        photos = store.get(auto).photo_count if auto is not None and enrolled else 0
        capture = wizard.capture_page.session
        held = {
            "photos_taken": len(capture.photos),
            "frames_held_by_gate": dict(capture.blocked.most_common()),
            "held_most_by": "" if capture.done else capture.blocking(),
        }
        # Destroy the Qt objects now, not during interpreter shutdown (PySide6 can crash there).
        wizard.deleteLater()
        app.processEvents()
        del wizard
    if driven is None:
        return EnrollmentRun(result, enrolled, None)
    report = {
        "error": driven.error,
        "source": source_spec,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "photos_target": enroll_config.photos,
        "photos_saved": photos,
        "capture": held,
        "steps_s": {k: round(v, 2) for k, v in timings.items()},
        "consent_to_trained_s": round(
            sum(v for k, v in timings.items() if k != "load_models_s"), 2
        ),
        "note": "consent and name are typed instantly by --auto; a person adds reading time",
    }
    return EnrollmentRun(result, enrolled, report)
