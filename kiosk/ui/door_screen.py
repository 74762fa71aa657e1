"""The public door screen: a clock, the camera as a mirror, and one large friendly answer.

It shows words only (:mod:`kiosk.ui.door_state` decides them): no confidence, timing,
provider or engineering notice; those are the operator view's (kiosk/ui/main_window.py).
Every size is a share of the window's, so it reads the same on a 7-inch 1024x600 panel
and on a 1080p screen, and each text is drawn at the largest size that fits its line
(:class:`~kiosk.ui.fit_text.FitLabel`): the answer is never cut or elided.
"""

from __future__ import annotations

from PySide6.QtCore import QDateTime, QLocale, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF, QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from kiosk.live.results import FrameResult
from kiosk.ui.door_state import STARTING, AnswerKind, DoorAnswer
from kiosk.ui.fit_text import FitLabel
from kiosk.ui.video_view import BACKGROUND, VideoView

# (band background, headline, detail) per answer.
BAND_COLOURS: dict[AnswerKind, tuple[str, str, str]] = {
    "starting": ("#1f2329", "#ffffff", "#b0bec5"),
    "idle": ("#1f2329", "#ffffff", "#b0bec5"),
    "hold": ("#1d3b5c", "#ffffff", "#cfd8dc"),
    "welcome": ("#17753a", "#ffffff", "#e8f5e9"),
    "not_recognised": ("#9a5500", "#ffffff", "#fff3e0"),
    "paused": ("#37474f", "#ffd54f", "#eceff1"),
    "unavailable": ("#37474f", "#ffd54f", "#eceff1"),
}
DOOR_GREEN = QColor(0, 170, 70)
HEADER_SHARE = 0.11  # of the window's height
BAND_SHARE = 0.27
DOOR_OPEN_TEXT = "Door open"


def edge_to_edge_column(parent: QWidget, top: QWidget, middle: QWidget, bottom: QWidget) -> None:
    """``parent`` laid out as three rows without margins; the middle one takes the rest."""
    layout = QVBoxLayout(parent)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    layout.addWidget(top)
    layout.addWidget(middle, 1)
    layout.addWidget(bottom)


class DoorSign(QWidget):
    """A green sign with an open door drawn on it and "Door open"; its space is kept
    while hidden, so the header does not move when the door opens or closes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        policy = QSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        policy.setRetainSizeWhenHidden(True)
        self.setSizePolicy(policy)
        self.label = FitLabel(DOOR_OPEN_TEXT, self, bold=True)
        self.label.setStyleSheet("color: white; background: transparent;")
        self.hide()

    def set_height(self, height: int) -> None:
        self.setFixedSize(round(height * 4.2), height)
        icon = self.icon_rect()
        pad = round(height * 0.18)
        self.label.set_largest(round(height * 0.55))
        self.label.setGeometry(
            round(icon.right()) + pad // 2, 0, self.width() - round(icon.right()) - pad, height
        )

    def icon_rect(self) -> QRectF:
        h = self.height()
        return QRectF(h * 0.3, h * 0.18, h * 0.5, h * 0.64)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(DOOR_GREEN)
            radius = self.height() / 2
            painter.drawRoundedRect(QRectF(self.rect()), radius, radius)
            frame = self.icon_rect()
            pen = QPen(QColor("white"), max(2.0, self.height() / 18))
            pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(frame)  # the door frame
            swing = frame.left() + frame.width() * 0.62
            drop = frame.height() * 0.1
            leaf = QPolygonF(  # the door, swung open towards the viewer
                [
                    frame.topLeft(),
                    QPointF(swing, frame.top() + drop),
                    QPointF(swing, frame.bottom() + drop),
                    frame.bottomLeft(),
                ]
            )
            painter.setBrush(QColor("white"))
            painter.drawPolygon(leaf)
        finally:
            painter.end()


class DoorScreen(QWidget):
    """Header (door sign, clock), the mirrored camera, the answer band."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("door")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setStyleSheet(f"QWidget#door {{ background: {BACKGROUND.name()}; }}")
        self.answer = STARTING
        self.door_is_open = False

        self.header = QWidget(self)
        self.door_sign = DoorSign(self.header)
        self.clock = FitLabel("", self.header, bold=True, alignment=Qt.AlignmentFlag.AlignRight)
        self.date = FitLabel("", self.header, alignment=Qt.AlignmentFlag.AlignRight)
        for label, colour in ((self.clock, "#ffffff"), (self.date, "#b0bec5")):
            label.setStyleSheet(f"color: {colour}; background: transparent;")
        clock_column = QVBoxLayout()
        clock_column.setContentsMargins(0, 0, 0, 0)
        clock_column.setSpacing(0)
        clock_column.addWidget(self.clock, 3)
        clock_column.addWidget(self.date, 2)
        header = self._header_layout = QHBoxLayout(self.header)
        header.addWidget(self.door_sign, 0, Qt.AlignmentFlag.AlignVCenter)
        header.addStretch(1)
        header.addLayout(clock_column, 0)
        self._clock_column = clock_column

        self.video = VideoView(self, public=True)

        self.band = QWidget(self)
        self.band.setObjectName("band")
        self.band.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.headline = FitLabel("", self.band, bold=True, smallest=14)
        self.detail = FitLabel("", self.band, smallest=12)
        band = QVBoxLayout(self.band)
        band.setSpacing(0)
        band.addWidget(self.headline, 3)
        band.addWidget(self.detail, 2)
        self._band_layout = band

        edge_to_edge_column(self, self.header, self.video, self.band)

        self.clock_timer = QTimer(self)
        self.clock_timer.setInterval(1000)
        self.clock_timer.timeout.connect(self.tick_clock)
        self.clock_timer.start()
        self.tick_clock()
        self._paint_answer(STARTING)

    def tick_clock(self) -> None:
        now = QDateTime.currentDateTime()
        locale = QLocale()
        self.clock.setText(locale.toString(now.time(), "HH:mm"))
        self.date.setText(locale.toString(now.date(), "dddd d MMMM"))

    def set_result(self, result: FrameResult) -> None:
        self.video.set_result(result)

    def show_answer(self, answer: DoorAnswer) -> None:
        if answer != self.answer:
            self.answer = answer
            self._paint_answer(answer)

    def set_door_open(self, is_open: bool) -> None:
        if is_open != self.door_is_open:
            self.door_is_open = is_open
            self.door_sign.setVisible(is_open)

    def texts(self) -> list[str]:
        """Everything the screen says right now (the tests look for numbers in it)."""
        shown = [self.clock.full_text(), self.date.full_text()]
        shown += [self.headline.full_text(), self.detail.full_text()]
        if self.door_is_open:
            shown.append(self.door_sign.label.full_text())
        return [text for text in shown if text]

    def _paint_answer(self, answer: DoorAnswer) -> None:
        background, headline, detail = BAND_COLOURS[answer.kind]
        self.band.setStyleSheet(f"QWidget#band {{ background: {background}; }}")
        self.headline.setStyleSheet(f"color: {headline}; background: transparent;")
        self.detail.setStyleSheet(f"color: {detail}; background: transparent;")
        self.headline.setText(answer.headline)
        self.detail.setText(answer.detail)
        # Without a second line the headline is centred in the whole band (same size).
        self.detail.setVisible(bool(answer.detail))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        w, h = self.width(), self.height()
        side = max(8, round(w * 0.03))
        header_h = max(40, round(h * HEADER_SHARE))
        band_h = max(90, round(h * BAND_SHARE))
        self.header.setFixedHeight(header_h)
        self._header_layout.setContentsMargins(side, round(header_h * 0.1), side, 0)
        self.door_sign.set_height(round(header_h * 0.7))
        clock_w = min(round(w * 0.3), round(header_h * 4.5))
        for label in (self.clock, self.date):
            label.setFixedWidth(clock_w)
        self.clock.set_largest(round(header_h * 0.6))
        self.date.set_largest(round(header_h * 0.3))
        self.band.setFixedHeight(band_h)
        self._band_layout.setContentsMargins(side, round(band_h * 0.08), side, round(band_h * 0.1))
        self.headline.set_largest(round(band_h * 0.42))
        self.detail.set_largest(round(band_h * 0.2))
