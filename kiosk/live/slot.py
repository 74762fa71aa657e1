"""A one-slot buffer that always holds the newest item, so queues never grow.

Putting an item over one nobody took replaces it and counts a dropped item: when
inference is slower than the camera, stale frames are skipped instead of queued.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class NewestSlot(Generic[T]):
    def __init__(self) -> None:
        self._item: T | None = None
        self._fresh = False  # put and not yet taken
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
            self._item = item
            self._fresh = True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item not yet taken, waiting up to ``timeout``; None if none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._fresh or self._closed, timeout):
                return None
            if not self._fresh:
                return None
            self._fresh = False
            return self._item

    def peek(self) -> T | None:
        """The newest item, taken or not; never blocks."""
        with self._cond:
            return self._item

    def close(self) -> None:
        """Wake every waiter; later takes return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
