"""The door-side window: the public door screen, the operator view, and the kiosk lock.

Two pages. The **door screen** (kiosk/ui/door_screen.py) is what the person at the door
sees: a clock, the camera as a mirror, one large answer in words, and "Door open". The
**operator view** is the engineering one: boxes with names and confidences, the liveness
state, and two status lines (FPS, provider, dropped frames, per-stage latency). Both
modes open on the door screen; `OVERLAY_SHORTCUT` switches. In kiosk mode the operator
view is behind the PIN and returns to the door screen by itself after
`OPERATOR_VIEW_S`; in windowed (setup) mode it switches freely.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import (
    QCloseEvent,
    QFont,
    QFontMetrics,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QResizeEvent,
)
from PySide6.QtWidgets import QLabel, QSizePolicy, QStackedLayout, QWidget

from kiosk.live.results import FrameResult
from kiosk.setup.pin import PinGate
from kiosk.ui.chime import DoorChime
from kiosk.ui.door_screen import DoorScreen, edge_to_edge_column
from kiosk.ui.door_state import DoorState
from kiosk.ui.fit_text import FitLabel
from kiosk.ui.pin_dialog import PinDialog
from kiosk.ui.result_source import ResultSource
from kiosk.ui.screen_fit import fit_to_screen
from kiosk.ui.status import status_text
from kiosk.ui.video_view import VideoView
from models.errors import UserError


def no_pin_message(kiosk: str = "kiosk") -> str:
    """Why kiosk mode does not start; ``kiosk``: the command prefix (with the user's
    ``--home``, ``--config``) of the command suggested."""
    return (
        "full-screen kiosk mode needs an operator PIN, or nobody could close it: set one "
        f"with `{kiosk} pin` (it writes its hash under [ui] in the config file); "
        "or use --windowed for setup"
    )


OPERATOR_SHORTCUT = "Ctrl+Shift+Q"
ENROLL_SHORTCUT = "Ctrl+Shift+E"
OVERLAY_SHORTCUT = "Ctrl+Shift+O"
STALE_AFTER_S = 2.0
OPERATOR_VIEW_S = 300.0  # kiosk mode: the operator view gives the screen back by itself
WINDOW_TITLE = "Face kiosk"


class KioskWindow(QWidget):
    """Polls a `ResultSource` on a timer and draws what it gets. Decides nothing.

    With a PIN hash, closing (close button, Alt+F4, the operator shortcut) asks for the
    PIN first. ``on_enroll`` (the enroll shortcut) opens enrollment: behind the PIN in
    kiosk mode, at once in windowed (setup) mode; the operator view likewise. Kiosk mode
    is full screen, frameless and on top, ignores Esc, returns to full screen if anything
    takes it out, and refuses to start without a PIN. ``door_open_s`` and ``door_sound``
    are ``[ui]``'s: how long "Door open" shows after a door event, and the chime.
    """

    def __init__(
        self,
        source: ResultSource,
        *,
        kiosk_mode: bool,
        pin_hash: str | None,
        poll_ms: int = 15,
        on_enroll: Callable[[], None] | None = None,
        door_open_s: float = 5.0,
        door_sound: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        if kiosk_mode and pin_hash is None:
            raise UserError(no_pin_message())
        super().__init__(parent)
        self._source = source
        self.kiosk_mode = kiosk_mode
        self.gate = PinGate(pin_hash) if pin_hash is not None else None
        self._unlocked = self.gate is None
        self.pin_dialog: PinDialog | None = None
        self.on_enroll = on_enroll
        self._last: FrameResult | None = None
        self._last_new_at = time.monotonic()
        self.door_state = DoorState(door_open_s=door_open_s)
        self.chime = DoorChime(self) if door_sound else None
        self.chimes = 0  # door events the chime sounded for

        self.setObjectName("kiosk")
        self.setStyleSheet("QWidget#kiosk { background: #101012; }")
        # The public page.
        self.door = DoorScreen(self)
        # The operator page: the engineering view.
        self.operator = QWidget(self)
        self.operator_hint = QLabel(self.operator)
        self.operator_hint.setObjectName("hint")
        self.operator_hint.setStyleSheet(
            "QLabel#hint { color: #101012; background: #ffc400; padding: 3px 10px; }"
        )
        self.operator_hint.setText(
            f"Operator view  ·  {OVERLAY_SHORTCUT}: the door screen"
            + (f"  ·  it returns by itself in {OPERATOR_VIEW_S / 60:.0f} min" if kiosk_mode else "")
        )
        self.operator_hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.video = VideoView(self.operator)
        self.status = FitLabel(
            status_text(None), self.operator, alignment=Qt.AlignmentFlag.AlignLeft
        )
        self.status.setObjectName("status")
        # Fixed: an Ignored height lets the video take the room of a fixed-height line.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.status.setStyleSheet(
            "QLabel#status { color: #d0d0d0; background: #101012; padding: 2px 10px;"
            " font-family: monospace; }"
        )
        edge_to_edge_column(self.operator, self.operator_hint, self.video, self.status)
        self.pages = QStackedLayout(self)
        self.pages.addWidget(self.door)
        self.pages.addWidget(self.operator)
        self.pages.setCurrentWidget(self.door)

        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(poll_ms)
        self.poll_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.poll_timer.timeout.connect(self.poll)
        self.operator_timer = QTimer(self)  # kiosk mode: the operator view times out
        self.operator_timer.setSingleShot(True)
        self.operator_timer.setInterval(round(OPERATOR_VIEW_S * 1000))
        self.operator_timer.timeout.connect(self.show_door_screen)

        if kiosk_mode:
            self.setWindowTitle(WINDOW_TITLE)
            self.setWindowFlags(
                Qt.WindowType.Window
                | Qt.WindowType.FramelessWindowHint
                | Qt.WindowType.WindowStaysOnTopHint
            )
            self.setCursor(Qt.CursorShape.BlankCursor)
            self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        else:
            self._title()
            fit_to_screen(self, 1280, 760)

    # --- the two pages ----------------------------------------------------------------

    @property
    def operator_view_shown(self) -> bool:
        return self.pages.currentWidget() is self.operator

    def show_operator_view(self) -> None:
        self.pages.setCurrentWidget(self.operator)
        if self.kiosk_mode:
            self.operator_timer.start()
        self._title()

    def show_door_screen(self) -> None:
        self.operator_timer.stop()
        self.pages.setCurrentWidget(self.door)
        self._title()

    def toggle_operator_view(self) -> None:
        """The overlay shortcut: back to the door screen at once; to the operator view
        only after the PIN in kiosk mode."""
        if self.operator_view_shown:
            self.show_door_screen()
        elif self.kiosk_mode and self.gate is not None:
            self.ask_pin(then=self.show_operator_view, purpose="open the operator view")
        else:
            self.show_operator_view()

    def _title(self) -> None:
        if not self.kiosk_mode:
            page = "operator view" if self.operator_view_shown else "door screen"
            self.setWindowTitle(f"{WINDOW_TITLE}: {page} ({OVERLAY_SHORTCUT} switches)")

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        pixels = max(12, self.height() // 48)  # readable across the hall too
        self.status.set_largest(pixels)
        font = QFont(self.status.font())
        font.setPixelSize(pixels)
        # Two lines, always, and the 2 px padding above and below them.
        self.status.setFixedHeight(QFontMetrics(font).lineSpacing() * 2 + 6)
        hint = QFont(self.operator_hint.font())
        hint.setPixelSize(pixels)
        self.operator_hint.setFont(hint)

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
            self.door.set_result(result)
            self.status.setText(status_text(result))
        # The source's own word comes first: when the camera is lost no new result
        # arrives to carry it. Else say that the picture has stopped moving.
        notice = self._source.status()
        if self._last is None:  # no result yet: the status lines say why, not "waiting"
            self.status.setText(status_text(None, notice=notice))
        stale = now - self._last_new_at
        if not notice and self._last is not None and stale >= STALE_AFTER_S:
            notice = f"no new frame for {stale:.0f} s"
        self.video.set_notice(notice)
        self.door.show_answer(self.door_state.update(self._last, notice, now))
        door_open = self.door_state.door_open(self._last, now)
        self.door.set_door_open(door_open)
        if self.door_state.new_door_event(self._last) and door_open and self.chime is not None:
            self.chime.play()
            self.chimes += 1

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
        self.operator_timer.stop()
        self.door.clock_timer.stop()
        if self.chime is not None:
            self.chime.close()
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
        if pressed == QKeySequence(OVERLAY_SHORTCUT):
            event.accept()
            self.toggle_operator_view()
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
