"""The door-side window: the live video, a status line, and the kiosk lock."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import (
    QCloseEvent,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QResizeEvent,
)
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from kiosk.live.results import FrameResult
from kiosk.setup.pin import PinGate
from kiosk.ui.pin_dialog import PinDialog
from kiosk.ui.result_source import ResultSource
from kiosk.ui.status import status_text
from kiosk.ui.video_view import VideoView
from models.errors import UserError

NO_PIN_MESSAGE = (
    "full-screen kiosk mode needs an operator PIN, or nobody could close it: make one with "
    "`kiosk pin` and put the line it prints under [ui] in the config file; "
    "or use --windowed for setup"
)
OPERATOR_SHORTCUT = "Ctrl+Shift+Q"
ENROLL_SHORTCUT = "Ctrl+Shift+E"
STALE_AFTER_S = 2.0


class KioskWindow(QWidget):
    """Polls a `ResultSource` on a timer and draws what it gets. Decides nothing.

    With a PIN hash, closing (close button, Alt+F4, the operator shortcut) asks for the
    PIN first. ``on_enroll`` (the enroll shortcut) opens enrollment: behind the PIN in
    kiosk mode, at once in windowed (setup) mode. Kiosk mode is full screen, frameless
    and on top, ignores Esc, returns to full screen if anything takes it out, and refuses
    to start without a PIN.
    """

    def __init__(
        self,
        source: ResultSource,
        *,
        kiosk_mode: bool,
        pin_hash: str | None,
        poll_ms: int = 15,
        on_enroll: Callable[[], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        if kiosk_mode and pin_hash is None:
            raise UserError(NO_PIN_MESSAGE)
        super().__init__(parent)
        self._source = source
        self.kiosk_mode = kiosk_mode
        self.gate = PinGate(pin_hash) if pin_hash is not None else None
        self._unlocked = self.gate is None
        self.pin_dialog: PinDialog | None = None
        self.on_enroll = on_enroll
        self._last: FrameResult | None = None
        self._last_new_at = time.monotonic()

        self.setWindowTitle("Face kiosk")
        self.setStyleSheet("KioskWindow { background: #101012; }")
        self.video = VideoView(self)
        self.status = QLabel(status_text(None), self)
        self.status.setObjectName("status")
        self.status.setStyleSheet(
            "QLabel#status { color: #d0d0d0; background: #101012; padding: 4px 10px;"
            " font-family: monospace; }"
        )
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        # A long status line is cut at the window's edge; it must never widen the window
        # (beyond the screen, a bare X session then drops the full-screen state).
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.video, 1)
        layout.addWidget(self.status)

        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(poll_ms)
        self.poll_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.poll_timer.timeout.connect(self.poll)

        if kiosk_mode:
            self.setWindowFlags(
                Qt.WindowType.Window
                | Qt.WindowType.FramelessWindowHint
                | Qt.WindowType.WindowStaysOnTopHint
            )
            self.setCursor(Qt.CursorShape.BlankCursor)
            self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        else:
            self.resize(1280, 760)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        font = self.status.font()
        font.setPixelSize(max(12, self.height() // 48))  # readable across the hall too
        self.status.setFont(font)

    def start(self) -> None:
        """Show the window and begin polling."""
        if self.kiosk_mode:
            self._fill_screen()
        else:
            self.show()
        self._last_new_at = time.monotonic()
        self.poll_timer.start()

    def poll(self) -> None:
        result = self._source.latest()
        now = time.monotonic()
        if result is not None and result is not self._last:
            self._last = result
            self._last_new_at = now
            self.video.set_result(result)
            self.status.setText(status_text(result))
        # The source's own word comes first: when the camera is lost no new result
        # arrives to carry it. Else say that the picture has stopped moving.
        notice = self._source.status()
        stale = now - self._last_new_at
        if not notice and self._last is not None and stale >= STALE_AFTER_S:
            notice = f"no new frame for {stale:.0f} s"
        self.video.set_notice(notice)

    # --- the lock -------------------------------------------------------------------

    def ask_pin(self, then: Callable[[], None] | None = None, purpose: str = "") -> None:
        """Open the PIN prompt (once); the right PIN runs ``then`` (default: close)."""
        if self.gate is None or self.pin_dialog is not None:
            return
        dialog = PinDialog(self.gate, self)
        if purpose:
            dialog.message.setText(f"Enter the operator PIN to {purpose}.")
        dialog.accepted.connect(then or self.shutdown)
        dialog.finished.connect(self._forget_dialog)
        self.pin_dialog = dialog
        dialog.open()

    def _forget_dialog(self) -> None:
        if self.pin_dialog is not None:
            self.pin_dialog.deleteLater()
            self.pin_dialog = None

    def shutdown(self) -> None:
        """Close without asking: after the right PIN, or on the machine's own stop (SIGTERM
        from the service manager). No key or click reaches this without the PIN."""
        self._unlocked = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._unlocked:
            event.ignore()
            self.ask_pin()
            return
        self.poll_timer.stop()
        event.accept()

    def request_enroll(self) -> None:
        """The operator asked to enroll someone: in kiosk mode, only after the PIN."""
        if self.on_enroll is None:
            return
        if self.kiosk_mode and self.gate is not None:
            self.ask_pin(then=self.on_enroll, purpose="enroll a volunteer")
        else:
            self.on_enroll()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        pressed = QKeySequence(event.keyCombination())
        if pressed == QKeySequence(OPERATOR_SHORTCUT):
            event.accept()
            self.close()  # through the PIN gate
            return
        if pressed == QKeySequence(ENROLL_SHORTCUT):
            event.accept()
            self.request_enroll()
            return
        if self.kiosk_mode and event.key() == Qt.Key.Key_Escape:
            event.accept()  # swallowed: Esc must not leave full screen
            return
        super().keyPressEvent(event)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if (
            self.kiosk_mode
            and not self._unlocked
            and event.type() == QEvent.Type.WindowStateChange
            and not self.windowState() & Qt.WindowState.WindowFullScreen
        ):
            QTimer.singleShot(0, self._fill_screen)  # minimised or un-maximised: back

    def _fill_screen(self) -> None:
        # Without a window manager (a bare X session, common on kiosks) the full-screen
        # state alone does not resize the window: cover the screen explicitly as well.
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            self.setGeometry(screen.geometry())
        self.showFullScreen()
