"""How much of the GUI thread drawing one result costs (`kiosk bench ui`).

On a 2-core kiosk the GUI thread shares the CPU with inference, so every millisecond
spent scaling and painting a frame is a millisecond the models do not get.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from kiosk import build
from kiosk.config import KioskConfig
from kiosk.live.replay import ReplayResults
from kiosk.live.results import FrameResult
from models.errors import UserError


def run_ui_bench(
    config: KioskConfig,
    video: Path,
    *,
    frames: int,
    repeats: int,
    sizes: Sequence[tuple[int, int]],
) -> dict[str, object]:
    """The first ``frames`` of ``video`` detected, then each drawn ``repeats`` times
    per window size, offscreen: the same figure with or without a screen, and none shown."""
    from kiosk.live.replay import video_frame_results

    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    detector = build.detector(config)
    try:
        results = video_frame_results(video, detector, frames)
    except ValueError as error:
        raise UserError(str(error)) from error
    return {
        "video": str(video),
        "cpu_count": os.cpu_count(),
        "runs": [measure_drawing(results, w, h, repeats) for w, h in sizes],
    }


def measure_drawing(
    results: Sequence[FrameResult], width: int, height: int, repeats: int
) -> dict[str, float | int | str | None]:
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
    rss_before = _rss_mb()
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
    rss_after = _rss_mb()
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
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
    }


def _rss_mb() -> float | None:
    """Resident memory of this process (Linux; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
