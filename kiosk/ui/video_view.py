"""The live video with a box per face: for the operator with a name and a confidence; on
the public door screen (``public=True``) mirrored, with plain boxes and no numbers."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from kiosk.live.results import FrameResult, TrackState, TrackView

STATE_COLOURS: dict[TrackState, QColor] = {
    "recognized": QColor(0, 200, 83),
    "unknown": QColor(229, 57, 53),
    "pending": QColor(158, 158, 158),
    "not_live": QColor(255, 145, 0),
}
# The public screen: a face is green once welcomed, white otherwise (red and grey boxes
# that both said "Unknown" told the person at the door nothing; the answer below does).
PUBLIC_COLOURS: dict[TrackState, QColor] = {
    "recognized": QColor(0, 200, 83),
    "unknown": QColor(240, 240, 240),
    "pending": QColor(240, 240, 240),
    "not_live": QColor(240, 240, 240),
}
BACKGROUND = QColor(16, 16, 18)
BANNER_TEXT = QColor(255, 196, 0)


def fit_rect(frame_w: int, frame_h: int, area_w: float, area_h: float) -> QRectF:
    """The largest rectangle of the frame's aspect ratio centred in the area."""
    if frame_w <= 0 or frame_h <= 0 or area_w <= 0 or area_h <= 0:
        return QRectF()
    scale = min(area_w / frame_w, area_h / frame_h)
    w, h = frame_w * scale, frame_h * scale
    return QRectF((area_w - w) / 2, (area_h - h) / 2, w, h)


def _box_area(track: TrackView) -> float:
    x1, y1, x2, y2 = track.box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


# The operator's tag names the state where the label alone would say "Unknown" for all.
STATE_TAGS: dict[TrackState, str] = {"pending": "deciding", "not_live": "not live"}


def track_text(track: TrackView) -> str:
    """The operator view's tag: the name or the state, and the confidence."""
    return f"{STATE_TAGS.get(track.state, track.label)}  {track.confidence:.0%}"


class VideoView(QWidget):
    """Draws the newest frame scaled to fit, and the tracks over it. Decides nothing.

    ``public``: the door screen's view, a mirror (turning left moves the face left) with
    plain boxes: no label, confidence, prompt or banner (the door screen says those in
    words, or the operator view does).
    """

    def __init__(self, parent: QWidget | None = None, *, public: bool = False) -> None:
        super().__init__(parent)
        self.public = public
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(320, 180)
        self._result: FrameResult | None = None
        self._frame: np.ndarray | None = None
        # The frame scaled to where it is drawn, and the pixels under that QImage.
        self._scaled: tuple[tuple[int, int], np.ndarray, QImage] | None = None
        self._notice = ""

    @property
    def result(self) -> FrameResult | None:
        return self._result

    def set_result(self, result: FrameResult) -> None:
        frame = np.ascontiguousarray(result.frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.shape} {frame.dtype}")
        self._frame = frame
        self._scaled = None
        self._result = result
        self.update()

    @property
    def notice(self) -> str:
        return self._notice

    def set_notice(self, text: str) -> None:
        """A line over the video, newer than the result's own source status (the camera is
        lost, no new frame for a while); "" for none."""
        if text != self._notice:
            self._notice = text
            self.update()

    def frame_rect(self) -> QRectF:
        """Where the frame is drawn, in widget pixels (empty before the first frame)."""
        if self._frame is None:
            return QRectF()
        h, w = self._frame.shape[:2]
        return fit_rect(w, h, self.width(), self.height())

    def map_box(self, box: tuple[float, float, float, float]) -> QRectF:
        """A box in frame pixels, in widget pixels."""
        target = self.frame_rect()
        if self._frame is None or target.isEmpty():
            return QRectF()
        scale = target.width() / self._frame.shape[1]
        x1, y1, x2, y2 = box
        if self.public:  # mirrored
            width = self._frame.shape[1]
            x1, x2 = width - x2, width - x1
        return QRectF(
            target.x() + x1 * scale, target.y() + y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale
        )

    def box_pen_width(self) -> float:
        return max(3.0, self.height() / 180)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), BACKGROUND)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            if self._frame is None or self._result is None:
                if not self.public:
                    self._draw_centre_text(painter, self._notice or "Waiting for video…")
                return
            target = self.frame_rect()
            painter.drawImage(target.topLeft(), self._scaled_image(self._frame, target))
            if self.public:
                for track in self._result.tracks:
                    self._draw_public_box(painter, track)
                return
            # Small (far) faces first, so the nearest person's name ends up on top.
            for track in sorted(self._result.tracks, key=_box_area):
                self._draw_track(painter, track)
            banner = self._notice or self._result.source_status  # the notice is newer
            if banner:
                self._draw_banner(painter, banner)
        finally:
            painter.end()

    def _scaled_image(self, frame: np.ndarray, target: QRectF) -> QImage:
        """The frame at the size it is drawn, once per result and size.

        Converting to Qt's native 32-bit layout and scaling with cv2 took ~40% less time
        than QPainter's smooth scaling of the 24-bit frame (512 px to 1080 px on this
        2-core machine), and a repaint without a new result costs no scaling at all:
        GUI-thread time on a 2-core kiosk is time taken from the models.
        """
        import cv2

        size = (max(1, round(target.width())), max(1, round(target.height())))
        if self._scaled is None or self._scaled[0] != size:
            shrink = size[0] < frame.shape[1]
            bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)  # before scaling: fewer pixels
            if self.public:
                bgra = cv2.flip(bgra, 1)
            pixels = np.ascontiguousarray(
                cv2.resize(bgra, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            )
            image = QImage(
                pixels.data, size[0], size[1], pixels.strides[0], QImage.Format.Format_RGB32
            )
            self._scaled = (size, pixels, image)
        return self._scaled[2]

    def _font(self, fraction: float, *, bold: bool = True) -> QFont:
        font = QFont(self.font())
        font.setPixelSize(max(12, round(self.height() * fraction)))
        font.setBold(bold)
        return font

    def _draw_track(self, painter: QPainter, track: TrackView) -> None:
        colour = STATE_COLOURS.get(track.state, STATE_COLOURS["pending"])
        rect = self.map_box(track.box)
        if rect.isEmpty():
            return
        pen = QPen(colour, self.box_pen_width())
        pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect)

        # The tag grows with the face up to a readable maximum, so a crowd stays legible.
        font = self._font(1 / 24)
        font.setPixelSize(max(11, min(font.pixelSize(), round(rect.height() * 0.3))))
        metrics = QFontMetricsF(font)
        text = track_text(track)
        pad = metrics.height() * 0.25
        tag = QRectF(0, 0, metrics.horizontalAdvance(text) + 2 * pad, metrics.height() + pad)
        # Above the box, or inside its top edge when the box touches the top of the frame.
        top = rect.top() - tag.height()
        if top < self.frame_rect().top():
            top = rect.top()
        tag.moveTo(QPointF(rect.left() - pen.widthF() / 2, top))
        painter.fillRect(tag, colour)
        painter.setFont(font)
        painter.setPen(QColor(0, 0, 0) if track.state != "unknown" else QColor(255, 255, 255))
        painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, text)
        if track.prompt:
            self._draw_prompt(painter, track.prompt, rect)

    def _draw_public_box(self, painter: QPainter, track: TrackView) -> None:
        rect = self.map_box(track.box)
        if rect.isEmpty():
            return
        pen = QPen(PUBLIC_COLOURS.get(track.state, PUBLIC_COLOURS["pending"]))
        pen.setWidthF(self.box_pen_width())
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        radius = min(rect.width(), rect.height()) * 0.12
        painter.drawRoundedRect(rect, radius, radius)

    def _draw_prompt(self, painter: QPainter, text: str, box: QRectF) -> None:
        """What the person is asked to do, centred under their face (inside the frame)."""
        font = self._font(1 / 28)
        metrics = QFontMetricsF(font)
        pad = metrics.height() * 0.3
        width = min(self.width(), metrics.horizontalAdvance(text) + 2 * pad)
        height = metrics.height() + pad
        frame = self.frame_rect()
        left = min(max(box.center().x() - width / 2, frame.left()), frame.right() - width)
        top = min(box.bottom() + pad, frame.bottom() - height)
        _draw_boxed_text(painter, QRectF(left, top, width, height), 6, font, text)

    def _draw_banner(self, painter: QPainter, text: str) -> None:
        font = self._font(1 / 22)
        metrics = QFontMetricsF(font)
        width = min(self.width() * 0.95, metrics.horizontalAdvance(text) + metrics.height() * 2)
        banner = QRectF(
            (self.width() - width) / 2, metrics.height() * 0.6, width, metrics.height() * 1.6
        )
        _draw_boxed_text(painter, banner, 8, font, text)

    def _draw_centre_text(self, painter: QPainter, text: str) -> None:
        painter.setFont(self._font(1 / 18, bold=False))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter, text)


def _draw_boxed_text(painter: QPainter, box: QRectF, radius: float, font: QFont, text: str) -> None:
    """Light text centred on a translucent dark rounded box (prompts and banners)."""
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 190))
    painter.drawRoundedRect(box, radius, radius)
    painter.setFont(font)
    painter.setPen(BANNER_TEXT)
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
