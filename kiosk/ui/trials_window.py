"""The operator's trials console: the live camera view beside the trials panel.

The pipeline's inference thread hands every result to
:func:`kiosk.trials.session.record_live_result` (the session is thread-safe), so no frame
of a trial is lost to the window's polling; the window's timer only draws the newest
result. The countdown is drawn big over the video,
and the trial's outcome stays there for a few seconds after it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QFont, QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from kiosk.live.results import FrameResult
from kiosk.trials.rules import TrialResult
from kiosk.trials.session import TrialSession, record_live_result
from kiosk.ui.trials_panel import TrialsPanel
from kiosk.ui.video_view import VideoView

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline

OUTCOME_SHOWN_MS = 3000


class TrialsWindow(QWidget):
    """Video (left) and panel (right); ``start()`` starts the pipeline and the drawing."""

    def __init__(
        self,
        pipeline: LivePipeline,
        session: TrialSession,
        *,
        liveness: bool,
        clock: Callable[[], float] = time.monotonic,
        poll_ms: int = 33,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Deployment trials")
        self.pipeline = pipeline
        self.session = session
        self.liveness = liveness
        self.video = VideoView()
        self.panel = TrialsPanel(session, clock=clock)
        self.overlay = QLabel("", self.video)
        # Low on the video, so the participant's face stays visible above it.
        self.overlay.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom)
        self.overlay.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.overlay.setStyleSheet("color: rgb(255, 196, 0); background: transparent;")
        layout = QHBoxLayout(self)
        layout.addWidget(self.video, 3)
        layout.addWidget(self.panel, 2)
        self._last: FrameResult | None = None
        self._stopped = False
        self._poll = QTimer(self)
        self._poll.setInterval(poll_ms)
        self._poll.timeout.connect(self.poll)
        self._clear = QTimer(self)
        self._clear.setSingleShot(True)
        self._clear.timeout.connect(self.overlay.clear)
        self.panel.countdown.connect(self._show_countdown)
        self.panel.trial_finished.connect(self._show_outcome)
        self.resize(1400, 800)

    def start(self) -> None:
        self.pipeline.on_result = self._record
        self.pipeline.start()
        self._poll.start()
        self.show()

    def _record(self, result: FrameResult) -> None:
        """On the inference thread: one frame for the active trial, if any."""
        record_live_result(self.session, result, liveness=self.liveness)

    def poll(self) -> None:
        result = self.pipeline.latest()
        if result is not None and result is not self._last:
            self._last = result
            self.video.set_result(result)
        self.video.set_notice(self.pipeline.status())

    def _show_countdown(self, remaining: float) -> None:
        self._clear.stop()
        self.overlay.setText(f"{remaining:.1f}")

    def _show_outcome(self, result: TrialResult) -> None:
        self.overlay.setText(f"{result.outcome.value}: {result.answer_label}")
        self._clear.start(OUTCOME_SHOWN_MS)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.overlay.setGeometry(self.video.rect())
        font = QFont()
        font.setPixelSize(max(24, self.video.height() // 6))
        font.setBold(True)
        self.overlay.setFont(font)

    def shutdown(self) -> None:
        """Stop drawing and the pipeline; judge a trial cut short. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._poll.stop()
        self.pipeline.stop()
        if self.session.active is not None:
            self.session.finish()  # a trial cut short is judged on the frames it had
            self.panel.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
