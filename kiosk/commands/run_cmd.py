"""`kiosk run`: the door-side window over the live pipeline."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.config import KioskConfig, load_config
from kiosk.errors import UserError

if TYPE_CHECKING:
    from kiosk.ui.result_source import LivePipeline


def start_pipeline(config: KioskConfig, source: str | None) -> LivePipeline:
    """The one place `kiosk run` gets its pipeline: point it at kiosk.pipeline."""
    raise UserError(
        "live recognition is not part of this build yet (kiosk/pipeline.py is missing), "
        "so `kiosk run` has nothing to show"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="open the door-side recognition window")
    parser.add_argument(
        "--source",
        default=None,
        help="camera index, video file, stream URL or image folder (default: the config's)",
    )
    parser.add_argument(
        "--windowed",
        action="store_true",
        help="a normal window for setup instead of the locked full-screen kiosk",
    )
    # Also accepted after `run`; SUPPRESS keeps `kiosk --config X run` working.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from kiosk.ui import application, has_display
    from kiosk.ui.main_window import KioskWindow
    from models.registry import ModelError

    try:
        config = load_config(args.config)
        if not args.windowed and config.ui.operator_pin is None:
            from kiosk.ui.main_window import NO_PIN_MESSAGE

            raise UserError(NO_PIN_MESSAGE)
        app = application()
        pipeline = start_pipeline(config, args.source)
    except (UserError, ModelError) as error:
        # The CLI prints it to stderr; a kiosk started from a launcher has no terminal,
        # so it also gets one dialog.
        if has_display():
            show_error_dialog(str(error))
        raise
    try:
        window = KioskWindow(
            pipeline,
            kiosk_mode=not args.windowed,
            pin_hash=config.ui.operator_pin,
            poll_ms=config.ui.poll_ms,
        )
        window.start()
        # The service manager's stop (SIGTERM) or Ctrl+C in the setup terminal closes the
        # window; the poll timer runs Python often enough for the handler to be called.
        previous = {
            signum: signal.signal(signum, lambda *_: window.shutdown())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            return int(app.exec())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        pipeline.stop()


def show_error_dialog(message: str) -> None:
    """One modal dialog with ``message``; returns when it is dismissed."""
    from PySide6.QtWidgets import QMessageBox

    from kiosk.ui import application

    try:
        application()
    except UserError:
        return
    box = QMessageBox(QMessageBox.Icon.Critical, "Face kiosk", "The kiosk cannot start.")
    box.setInformativeText(message)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()
