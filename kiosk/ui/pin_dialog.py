"""The operator PIN prompt that guards leaving the kiosk (and its operator view, and
enrollment from it).

One Enter is one attempt: the line edit's Enter submits, and no button of the dialog is
a default button. (When Ok was the default, one Enter submitted twice, once for the
line edit and once for Ok; and when the lockout disabled the line edit, the focus fell
on Cancel, whose default-ness made the next Enter close the dialog without a word.)
A lockout is said, with the time left, until it ends."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeyEvent, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from kiosk.setup.pin import MAX_PIN_LENGTH, PinGate


def locked_text(seconds: float) -> str:
    """How long a lockout still lasts, in whole seconds or minutes and seconds."""
    left = max(1, math.ceil(seconds))
    if left < 60:
        return f"{left} s"
    return f"{left // 60} min {left % 60:02d} s"


class PinDialog(QDialog):
    """Accepts only when the gate takes the PIN; gives up by itself when left idle, so a
    forgotten prompt never hides the door screen for long."""

    def __init__(self, gate: PinGate, parent: QWidget | None = None, *, idle_s: float = 30) -> None:
        super().__init__(parent)
        self._gate = gate
        self.setWindowTitle("Operator PIN")
        self.setModal(True)
        # Large enough to hit on a door-side touch screen and to read standing up.
        # A style sheet, not setFont: the kiosk window's style sheet would override that.
        self.setStyleSheet("PinDialog, PinDialog * { font-size: 22px; }")
        self.setMinimumWidth(480)
        self.message = QLabel("Enter the operator PIN to leave the kiosk.", self)
        self.pin_edit = QLineEdit(self)
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin_edit.setMaxLength(MAX_PIN_LENGTH)
        self.pin_edit.setPlaceholderText("PIN")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        for button in self.buttons.buttons():
            if isinstance(button, QPushButton):
                button.setAutoDefault(False)  # Enter is the line edit's alone: see above
                button.setDefault(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addWidget(self.pin_edit)
        layout.addWidget(self.buttons)
        self.buttons.accepted.connect(self._submit)
        self.buttons.rejected.connect(self.reject)
        self.pin_edit.returnPressed.connect(self._submit)
        self.pin_edit.textEdited.connect(self._restart_idle)

        self.idle_timer = QTimer(self)
        self.idle_timer.setSingleShot(True)
        self.idle_timer.setInterval(round(idle_s * 1000))
        self.idle_timer.timeout.connect(self.reject)
        self.lock_timer = QTimer(self)  # counts a lockout down on screen
        self.lock_timer.setInterval(250)
        self.lock_timer.timeout.connect(self._show_lock)
        self.finished.connect(self._stop_timers)
        self._show_lock()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._restart_idle()
        self.pin_edit.setFocus()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            event.accept()  # the line edit has submitted already; no button takes it too
            return
        super().keyPressEvent(event)

    def _restart_idle(self) -> None:
        self.idle_timer.start()

    def _stop_timers(self) -> None:
        self.idle_timer.stop()
        self.lock_timer.stop()

    def _submit(self) -> None:
        self._restart_idle()
        if self._gate.locked_for() > 0:
            return
        pin = self.pin_edit.text()
        self.pin_edit.clear()
        if self._gate.attempt(pin):
            self.accept()
            return
        self.message.setText("Wrong PIN. Try again.")
        self._show_lock()

    def _show_lock(self) -> None:
        wait = self._gate.locked_for()
        locked = wait > 0
        self.pin_edit.setEnabled(not locked)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not locked)
        if locked:
            self.message.setText(
                f"Too many wrong PINs: the PIN is locked. Try again in {locked_text(wait)}."
            )
            if not self.lock_timer.isActive():
                self.lock_timer.start()
        elif self.lock_timer.isActive():
            self.lock_timer.stop()
            self.message.setText("Enter the operator PIN to leave the kiosk.")
            self.pin_edit.setFocus()
