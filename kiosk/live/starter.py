"""The live pipeline built and started on a worker thread, so a window can show at once.

`kiosk run` opens its window on a :class:`PipelineStarter`; loading the models takes
seconds, during which the window says so (:data:`STARTING`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from models.errors import ModelError, UserError

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline as Pipeline
    from kiosk.live.results import FrameResult
    from kiosk.live.retrain import Retrainer

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
        except (UserError, ModelError) as error:  # the user's to fix: a message, no traceback
            log.info("the live pipeline could not be built: %s", error)
            self.error = error
            self.started.set()
            return
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

    @property
    def retrainer(self) -> Retrainer | None:
        return self.pipeline.retrainer if self.pipeline is not None else None

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
