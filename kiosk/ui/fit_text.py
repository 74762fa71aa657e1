"""Text that fits its label: the font shrinks until every line fits, instead of the text
being cut at the edge or the label widening the window."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


def fits(font: QFont, lines: Sequence[str], width: int, height: int) -> bool:
    metrics = QFontMetrics(font)
    if metrics.lineSpacing() * len(lines) > height:
        return False
    return all(metrics.horizontalAdvance(line) <= width for line in lines)


def fitted_font(
    font: QFont, lines: Sequence[str], width: int, height: int, largest: int, smallest: int
) -> QFont:
    """``font`` at the largest pixel size in [smallest, largest] at which ``lines`` fit
    ``width`` x ``height`` (``smallest`` when none does)."""
    fitted = QFont(font)
    low, high = smallest, max(smallest, largest)
    while low < high:  # the largest size that fits
        middle = (low + high + 1) // 2
        fitted.setPixelSize(middle)
        if fits(fitted, lines, width, height):
            low = middle
        else:
            high = middle - 1
    fitted.setPixelSize(low)
    return fitted


class FitLabel(QLabel):
    """A plain-text label drawn at the largest font size (up to ``largest`` pixels) at
    which each of its lines fits its width and all of them its height.

    Its size hint ignores the text, so new text never moves the layout around it; the
    layout (or ``setFixedHeight``) gives it its size. Only when even ``smallest`` pixels
    do not fit is a line elided (``elided`` says so; the door screen's tests require it
    never is).
    """

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        *,
        largest: int = 48,
        smallest: int = 12,
        bold: bool = False,
        alignment: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignCenter,
    ) -> None:
        super().__init__(parent)
        self._full = ""
        self._stale = False  # text set while hidden: fitted when shown
        self.largest = largest
        self.smallest = smallest
        self.elided = False
        font = self.font()
        font.setBold(bold)
        self.setFont(font)
        self.setAlignment(alignment)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setText(text)

    def full_text(self) -> str:
        """The text as set (``text()`` is the elided one in the rare case it did not fit)."""
        return self._full

    def setText(self, text: str) -> None:
        self._full = text
        self._refit()

    def set_largest(self, pixels: int) -> None:
        if pixels != self.largest:
            self.largest = pixels
            self._refit()

    def sizeHint(self) -> QSize:
        return QSize(self.smallest * 4, QFontMetrics(self.font()).lineSpacing())

    def minimumSizeHint(self) -> QSize:
        return QSize(0, 0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._refit()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._refit()

    def lines(self) -> list[str]:
        return self._full.split("\n") if self._full else []

    def text_fits(self) -> bool:
        """Whether every line, at the font in use, fits inside the label's contents."""
        area = self.contentsRect()
        return fits(self.font(), self.lines(), area.width(), area.height())

    def _refit(self) -> None:
        if not self.isVisible():  # a hidden label (the operator view's) costs nothing per frame
            self._stale = True
            super().setText(self._full)
            return
        self._stale = False
        area = self.contentsRect()
        lines = self.lines()
        if not lines or area.width() <= 0 or area.height() <= 0:
            super().setText(self._full)
            return
        font = fitted_font(
            self.font(), lines, area.width(), area.height(), self.largest, self.smallest
        )
        if font != self.font():
            self.setFont(font)
        shown = lines
        self.elided = not fits(font, lines, area.width(), area.height())
        if self.elided:
            metrics = QFontMetrics(font)
            shown = [
                metrics.elidedText(line, Qt.TextElideMode.ElideRight, area.width())
                for line in lines
            ]
        super().setText("\n".join(shown))
