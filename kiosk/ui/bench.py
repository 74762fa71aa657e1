"""How much of the GUI thread drawing one result costs (`kiosk ui-bench`).

On a 2-core kiosk the GUI thread shares the CPU with inference, so every millisecond
spent scaling and painting a frame is a millisecond the models do not get.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from kiosk.detection_replay import ReplayResults
from kiosk.results import FrameResult


def measure_drawing(
    results: Sequence[FrameResult], width: int, height: int, repeats: int
) -> dict[str, float | int | str]:
    """Per new result: the window's poll (hand-over, status text) plus a synchronous
    repaint of the video and the status line, at ``width`` x ``height``."""
    from kiosk.ui import application
    from kiosk.ui.main_window import KioskWindow

    app = application()
    source = ReplayResults(results)
    window = KioskWindow(source, kiosk_mode=False, pin_hash=None)
    window.resize(width, height)
    window.show()
    app.processEvents()
    times_ms = []
    try:
        for _ in range(repeats):
            source.advance()
            start = time.perf_counter()
            window.poll()
            window.video.repaint()
            window.status.repaint()
            times_ms.append((time.perf_counter() - start) * 1000)
    finally:
        window.shutdown()
        app.processEvents()
    times_ms.sort()
    frame_h, frame_w = results[0].frame.shape[:2]
    return {
        "platform": app.platformName(),
        "window": f"{width}x{height}",
        "frame": f"{frame_w}x{frame_h}",
        "draws": len(times_ms),
        "draw_ms_p50": round(statistics.median(times_ms), 3),
        "draw_ms_p95": round(times_ms[int(0.95 * (len(times_ms) - 1))], 3),
        "draw_ms_mean": round(statistics.fmean(times_ms), 3),
    }
