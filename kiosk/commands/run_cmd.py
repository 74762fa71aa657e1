"""`kiosk run`: the door-side window over the live pipeline."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.build import live_pipeline
from kiosk.config import KioskConfig, load_config
from models.errors import UserError

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline as Pipeline
    from kiosk.live.results import FrameResult
    from kiosk.ui.result_source import LivePipeline

log = logging.getLogger(__name__)
STARTING = "Starting… loading the models"


class PipelineStarter:
    """A `LivePipeline` built and started on a worker thread, so the window shows at once.

    Until the pipeline runs, ``latest()`` is None and ``status()`` says it is starting;
    if building fails, ``status()`` says why and ``error`` holds the exception.
    """

    def __init__(self, build: Callable[[], Pipeline]) -> None:
        self._build = build
        self.pipeline: Pipeline | None = None
        self.error: BaseException | None = None
        self.started = threading.Event()  # set when the pipeline runs, or failed to
        self._lock = threading.Lock()
        self._stopped = False
        self._paused = False
        self._thread = threading.Thread(target=self._start, name="pipeline-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            pipeline = self._build()
        except Exception as error:  # shown in the window, re-raised by `kiosk run`
            log.exception("the live pipeline could not be built")
            self.error = error
            self.started.set()
            return
        with self._lock:
            if self._stopped:  # the window closed while the models loaded
                pipeline.stop()
            else:
                if self._paused:  # enrollment began while the models loaded
                    pipeline.pause()
                pipeline.start()
                self.pipeline = pipeline
        self.started.set()

    def latest(self) -> FrameResult | None:
        pipeline = self.pipeline
        return pipeline.latest() if pipeline is not None else None

    def status(self) -> str:
        if self.error is not None:
            return f"The kiosk cannot start: {self.error}"
        pipeline = self.pipeline
        return pipeline.status() if pipeline is not None else STARTING

    def pause(self) -> None:
        """Release the camera (for the enrollment wizard) until ``resume()``."""
        with self._lock:
            self._paused = True
            pipeline = self.pipeline
        if pipeline is not None:
            pipeline.pause()

    def check_recognizer(self) -> None:
        if self.pipeline is not None:
            self.pipeline.check_recognizer()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            pipeline = self.pipeline
        if pipeline is not None:
            pipeline.resume()

    def stop(self) -> None:
        """Stop the pipeline; one still being built is not started and is released."""
        with self._lock:
            self._stopped = True
            pipeline = self.pipeline
        if pipeline is not None:
            pipeline.stop()
        else:  # model loading cannot be interrupted (seconds); _start then releases it
            self._thread.join()


def start_pipeline(config: KioskConfig, source: str | None) -> LivePipeline:
    """The one place `kiosk run` gets its pipeline: built and started off the GUI thread."""

    return PipelineStarter(lambda: live_pipeline(config, source=source))


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
    parser.add_argument(
        "--yes", action="store_true", help="download missing model files without asking"
    )
    # Also accepted after `run`; SUPPRESS keeps `kiosk --config X run` working.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from kiosk.ui import application, has_display, show_error_dialog
    from kiosk.ui.main_window import KioskWindow
    from models.errors import ModelError

    try:
        config = load_config(args.config)
        if not args.windowed and config.ui.operator_pin is None:
            from kiosk.ui.main_window import NO_PIN_MESSAGE

            raise UserError(NO_PIN_MESSAGE)
        _first_run(config, assume_yes=args.yes)
        app = application()
        pipeline = start_pipeline(config, args.source)
    except (UserError, ModelError) as error:
        # The CLI prints it to stderr; a kiosk started from a launcher has no terminal,
        # so it also gets one dialog.
        if has_display():
            show_error_dialog(str(error))
        raise
    try:
        from kiosk.ui.enrollment import KioskEnrollment

        window = KioskWindow(
            pipeline,
            kiosk_mode=not args.windowed,
            pin_hash=config.ui.operator_pin,
            poll_ms=config.ui.poll_ms,
            door_open_s=config.ui.door_open_s,
            door_sound=config.ui.door_sound,
        )
        if isinstance(pipeline, PipelineStarter):
            source = args.source if args.source is not None else config.kiosk.source
            window.on_enroll = KioskEnrollment(window, config, source, pipeline).open
        window.start()
        # The service manager's stop (SIGTERM) or Ctrl+C in the setup terminal closes the
        # window; the poll timer runs Python often enough for the handler to be called.
        previous = {
            signum: signal.signal(signum, lambda *_: window.shutdown())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            code = int(app.exec())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        pipeline.stop()
    failed = getattr(pipeline, "error", None)  # shown in the window; the CLI says it too
    if isinstance(failed, UserError | ModelError):
        raise failed
    return code


def _first_run(config: KioskConfig, *, assume_yes: bool) -> None:
    """Missing model files: say what will be downloaded, ask, fetch, before any window."""
    from kiosk.setup.first_run import ensure_models, needed_models
    from models.registry import resolve_model_dir

    ensure_models(
        needed_models(config),
        resolve_model_dir(config.models.dir),
        assume_yes=assume_yes,
        command="kiosk run",
    )
