"""Garbage collection happens on the GUI thread, never on a worker (kiosk/ui/gc_thread.py)."""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject

from kiosk.gc_policy import collect_due
from kiosk.ui.gc_thread import GuiThreadCollector


class Cycle:
    """Refers to itself, so only the cyclic collector frees it; records where."""

    def __init__(self, finalized_on: list[str]) -> None:
        self.me = self
        self.finalized_on = finalized_on

    def __del__(self) -> None:
        self.finalized_on.append(threading.current_thread().name)


def test_a_busy_worker_thread_never_collects_and_the_gui_thread_does(qtbot) -> None:  # type: ignore[no-untyped-def]
    owner = QObject()
    GuiThreadCollector(owner, interval_ms=20)
    assert not gc.isenabled()
    finalized_on: list[str] = []
    Cycle(finalized_on)

    kept: list[object] = []

    def allocate() -> None:  # far past every threshold: CPython would collect here
        kept.extend((i, [i]) for i in range(50_000))

    worker = threading.Thread(target=allocate, name="worker")
    worker.start()
    worker.join()
    assert finalized_on == []
    qtbot.waitUntil(lambda: finalized_on != [], timeout=2000)
    assert finalized_on == [threading.main_thread().name]
    owner.deleteLater()


def test_collect_due_collects_only_past_a_threshold() -> None:
    gc.collect()
    assert collect_due() == 0  # every count is back to zero
    finalized_on: list[str] = []
    Cycle(finalized_on)
    assert collect_due() == 0 and finalized_on == []  # one object is not a collection
    threshold0 = gc.get_threshold()[0]
    kept = [[i] for i in range(threshold0 + 1)]
    assert collect_due() >= 1 and finalized_on == [threading.main_thread().name]
    assert len(kept) > threshold0  # alive until here: freeing objects lowers the count
