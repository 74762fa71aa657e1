"""The operator's trials console: the live camera view beside the trials panel.

The pipeline's inference thread hands every result to
:func:`kiosk.trials.session.record_live_result` (the session is thread-safe), so no frame
of a trial is lost to the window's polling; the window's timer only draws the newest
result. The countdown is drawn big over the video, and the trial's outcome stays there
for a few seconds after it ends, on two lines ("TP", then the answer) at the largest size
that fits the video's width. The window fits its screen (1024x600 and up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QHBoxLayout, QWidget

from kiosk.live.results import FrameResult
from kiosk.trials.rules import TrialResult
from kiosk.trials.session import TrialSession, record_live_result
from kiosk.ui.fit_text import FitLabel
from kiosk.ui.screen_fit import fit_to_screen
from kiosk.ui.trials_panel import TrialsPanel
from kiosk.ui.video_view import VideoView

if TYPE_CHECKING:
    from kiosk.erasure import ErasureFinisher
    from kiosk.live.pipeline import LivePipeline
    from kiosk.trials.runs import EnrolledRoster

OUTCOME_SHOWN_MS = 3000


class TrialsWindow(QWidget):
    """Video (left) and panel (right); ``start()`` starts the pipeline and the drawing.

    With a ``roster``, the session's enrolled participants follow the people store: each
    poll asks it who was erased since, and they leave the roster (a trial of theirs in
    progress is dropped); then the ``finisher`` finishes the erasure on its thread and
    signals back, and the panel shows the session's trials as anonymised in the store.
    """

    erasures_finished = Signal()  # emitted on the finisher's thread

    def __init__(
        self,
        pipeline: LivePipeline,
        session: TrialSession,
        *,
        liveness: bool,
        clock: Callable[[], float] = time.monotonic,
        poll_ms: int = 33,
        target_fpr: float = 0.02,
        reports: Path | None = None,
        roster: EnrolledRoster | None = None,
        finisher: ErasureFinisher | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Deployment trials")
        self.pipeline = pipeline
        self.session = session
        self.liveness = liveness
        self.roster = roster
        self.finisher = finisher
        self.video = VideoView()
        self.panel = TrialsPanel(
            session, clock=clock, video=self.video, target_fpr=target_fpr, reports=reports
        )
        # Low on the video, so the participant's face stays visible above it.
        self.overlay = FitLabel("", self.video, largest=160, smallest=14, bold=True)
        self.overlay.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.overlay.setStyleSheet("color: rgb(255, 196, 0); background: rgba(0, 0, 0, 110);")
        self.overlay.hide()
        self.video.installEventFilter(self)  # the overlay follows the video's size
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.panel)
        self._last: FrameResult | None = None
        self._stopped = False
        self._poll = QTimer(self)
        self._poll.setInterval(poll_ms)
        self._poll.timeout.connect(self.poll)
        self._clear = QTimer(self)
        self._clear.setSingleShot(True)
        self._clear.timeout.connect(self._clear_overlay)
        self.panel.countdown.connect(self._show_countdown)
        self.panel.trial_finished.connect(self._show_outcome)
        self.erasures_finished.connect(self.panel.reload_results)
        if finisher is not None:
            finisher.on_finished = self.erasures_finished.emit
        fit_to_screen(self, 1400, 820)

    def start(self) -> None:
        self.pipeline.on_result = self._record
        self.pipeline.start()
        self._poll.start()
        self.show()

    def _record(self, result: FrameResult) -> None:
        """On the inference thread: one frame for the active trial, if any."""
        record_live_result(self.session, result, liveness=self.liveness)

    def poll(self) -> None:
        self._follow_roster()
        result = self.pipeline.latest()
        if result is not None and result is not self._last:
            self._last = result
            self.video.set_result(result)
        self.video.set_notice(self.pipeline.status())

    def _follow_roster(self) -> None:
        """Whoever was erased from the people store leaves the session's roster now;
        the erasure is finished, and the trials shown anonymised, soon after."""
        erased = self.roster.erased() if self.roster is not None else []
        if not erased:
            return
        if self.panel.forget(erased):
            self._clear.stop()
            self._clear_overlay()
        if self.finisher is not None:
            self.finisher.request()

    def _show_countdown(self, remaining: float) -> None:
        self._clear.stop()
        self._set_overlay(f"{remaining:.1f}")

    def _show_outcome(self, result: TrialResult) -> None:
        self._set_overlay(f"{result.outcome.value}\n{result.answer_label}")
        self._clear.start(OUTCOME_SHOWN_MS)

    def _set_overlay(self, text: str) -> None:
        self.overlay.setText(text)
        self._place_overlay()
        self.overlay.show()

    def _clear_overlay(self) -> None:
        self.overlay.hide()
        self.overlay.setText("")

    def overlay_text(self) -> str:
        """The overlay as one line ("TP: solo_01"), "" when nothing is shown."""
        return ": ".join(self.overlay.lines())

    def _place_overlay(self) -> None:
        """The lower part of the video: one line (the countdown) or two (the outcome)."""
        lines = max(1, len(self.overlay.lines()))
        area = self.video.rect()
        height = min(area.height(), round(area.height() * (0.22 if lines == 1 else 0.36)))
        self.overlay.setGeometry(area.x(), area.bottom() + 1 - height, area.width(), height)
        self.overlay.set_largest(max(24, height // lines))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.video and event.type() == QEvent.Type.Resize:
            self._place_overlay()
        return super().eventFilter(watched, event)

    def shutdown(self) -> None:
        """Stop drawing and the pipeline; judge a trial cut short. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._poll.stop()
        if self.finisher is not None:
            self.finisher.on_finished = None  # nothing to show any more
        self.pipeline.stop()
        if self.session.active is not None:
            self.session.finish()  # a trial cut short is judged on the frames it had
            self.panel.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
