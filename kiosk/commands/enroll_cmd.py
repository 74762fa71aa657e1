"""`kiosk enroll`: the enrollment wizard on a camera or a video file.

``--auto NAME --report FILE`` plays the volunteer and the operator (agrees, types the
name, accepts every photo) and writes how long each wizard step took: the benchmark.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.config import load_config
from kiosk.live.sources import FrameSource, LiveCaptureSource, open_source
from models.errors import UserError

if TYPE_CHECKING:
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("enroll", help="enroll a volunteer with the guided wizard")
    parser.add_argument(
        "--source", default="0", help="camera index or video file standing in for it (default 0)"
    )
    parser.add_argument("--store", type=Path, default=None, help="override the people store dir")
    parser.add_argument("--auto", metavar="NAME", help="drive the wizard itself (benchmark)")
    parser.add_argument("--report", type=Path, help="with --auto: write step timings as JSON")
    parser.set_defaults(handler=_enroll)


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


def _enroll(args: argparse.Namespace) -> int:
    if args.report is not None and args.auto is None:
        raise UserError("--report needs --auto NAME")
    config = load_config(args.config)
    enroll_config = config.enroll
    if args.store is not None:
        enroll_config = enroll_config.model_copy(update={"store_dir": args.store})
    timings: dict[str, float] = {}
    started = time.monotonic()

    from kiosk.setup.site import people_store
    from kiosk.ui import application
    from kiosk.ui.enrollment import enrollment_models, frame_reader
    from kiosk.ui.wizard import EnrollWizard, drive_automatically

    app = application()
    detector, embedder = enrollment_models(config)
    source = open_enroll_source(args.source)
    timings["load_models_s"] = time.monotonic() - started
    with people_store(config, enroll_config.store_dir) as store:
        wizard = EnrollWizard(
            store,
            enroll_config,
            lambda: frame_reader(source),
            detector,
            embedder,
            threshold=config.recognizer.gallery_threshold,
        )
        if args.auto:
            drive_automatically(wizard, args.auto, source, timings)
        wizard.show()
        result = app.exec()
        source.close()
        photos = store.get(args.auto).photo_count if args.auto and wizard.gallery else 0
        enrolled = wizard.gallery is not None
        # Destroy the Qt objects now, not during interpreter shutdown (PySide6 can crash there).
        wizard.deleteLater()
        app.processEvents()
        del wizard
    if args.auto:
        report = {
            "source": args.source,
            "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
            "photos_target": enroll_config.photos,
            "photos_saved": photos,
            "steps_s": {k: round(v, 2) for k, v in timings.items()},
            "consent_to_trained_s": round(
                sum(v for k, v in timings.items() if k != "load_models_s"), 2
            ),
            "note": "consent and name are typed instantly by --auto; a person adds reading time",
        }
        text = json.dumps(report, indent=2, ensure_ascii=False)
        print(text)
        if args.report is not None:
            args.report.write_text(text + "\n", encoding="utf-8")
        if not enrolled:
            raise UserError("the automatic enrollment did not finish (see the report)")
    return 0 if result == 0 or enrolled else 1
