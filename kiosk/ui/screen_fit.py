"""Windows that fit the screen they open on: a 7-inch 1024x600 kiosk panel as well as a
1080p monitor."""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget


def free_area(widget: QWidget) -> QRect | None:
    """The available geometry (without panels and docks) of the widget's screen."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    return None if screen is None else screen.availableGeometry()


def fit_to_screen(widget: QWidget, width: int, height: int) -> None:
    """Resize ``widget`` to ``width`` x ``height``, or to its screen's free area where that
    is smaller, and move it inside that area.

    Under a window manager the frame (title bar, borders) takes a little more room than
    the window itself: once the window has a frame, the size leaves room for it.
    """
    free = free_area(widget)
    if free is None:
        widget.resize(width, height)
        return
    frame_w, frame_h = _frame_allowance(widget)
    width = min(width, free.width() - frame_w)
    height = min(height, free.height() - frame_h)
    widget.resize(max(width, 1), max(height, 1))
    x = free.x() + max(0, (free.width() - width - frame_w) // 2)
    y = free.y() + max(0, (free.height() - height - frame_h) // 2)
    widget.move(x, y)


def _frame_allowance(widget: QWidget) -> tuple[int, int]:
    """What a window manager's frame adds: measured once the window has one (a bare X
    session, usual on kiosks, has none)."""
    frame, inner = widget.frameGeometry(), widget.geometry()
    return max(0, frame.width() - inner.width()), max(0, frame.height() - inner.height())
