"""Python's cyclic garbage collector, run on the GUI thread only (why: kiosk/gc_policy.py)."""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

from kiosk.gc_policy import collect_due

INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Owned by the QApplication; collects on its thread every ``interval_ms``."""

    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(collect_due)
        self.timer.start()
