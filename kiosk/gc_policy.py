"""When Python's cyclic garbage collector runs: on one chosen thread, never on a worker.

CPython collects in whichever thread happens to allocate when a generation's threshold
is crossed. In the kiosk that is usually a capture or inference thread. A Qt object
that sits in a reference cycle (a widget whose slot is one of its own bound methods,
say) is then destroyed on that thread, and Qt objects must die on the thread they live
on: CI saw the enrollment wizard's capture thread segfault inside a tuple allocation
in insightface's SCRFD, exactly where such a collection had been triggered.

So automatic collection is switched off and the GUI thread collects instead, with
CPython's own thresholds, from a timer (``kiosk.ui.gc_thread.GuiThreadCollector``), or
the test suite's teardown (tests/conftest.py), both through :func:`collect_due`.
"""

from __future__ import annotations

import gc


def collect_due() -> int:
    """Collect the oldest generation whose count passed its threshold (and with it every
    younger one), as CPython would; return the number of unreachable objects found."""
    counts = gc.get_count()
    for generation, threshold in reversed(list(enumerate(gc.get_threshold()))):
        if threshold > 0 and counts[generation] > threshold:
            return gc.collect(generation)
    return 0
