"""Real video frames with real SCRFD boxes as `FrameResult`s, for what needs the window's
input without the live pipeline: the window tests and `kiosk bench ui`.

It recognizes nobody (it has no recognizer): the caller says which label and state the
boxes carry, because the window only draws what it is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kiosk.live.results import FrameResult, TrackState, TrackView
from models.detector import FaceDetector


def video_frame_results(
    video: Path,
    detector: FaceDetector,
    count: int,
    *,
    label: str = "Ada Lovelace",
    state: TrackState = "recognized",
    source_status: str = "",
) -> list[FrameResult]:
    """The first ``count`` frames of ``video``, each with its largest face as one track."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    results: list[FrameResult] = []
    try:
        previous = time.monotonic()
        while len(results) < count:
            start = time.monotonic()
            ok, raw = capture.read()
            if not ok:
                break
            frame = np.asarray(raw, dtype=np.uint8)
            decoded = time.monotonic()
            faces = detector.detect(frame, mode="largest")
            detected = time.monotonic()
            tracks = tuple(
                TrackView(
                    track_id=1,
                    box=(float(f.box[0]), float(f.box[1]), float(f.box[2]), float(f.box[3])),
                    label=label,
                    confidence=f.score,
                    state=state,
                )
                for f in faces
            )
            results.append(
                FrameResult(
                    frame_index=len(results),
                    frame=frame,
                    captured_at=start,
                    tracks=tracks,
                    stage_ms={
                        "decode": (decoded - start) * 1000,
                        "detect": (detected - decoded) * 1000,
                    },
                    fps=1.0 / max(detected - previous, 1e-6),
                    dropped_frames=0,
                    providers=tuple(detector.providers),
                    source_status=source_status,
                )
            )
            previous = detected
    finally:
        capture.release()
    if len(results) < count:
        raise ValueError(f"{video} has only {len(results)} frames, {count} asked")
    return results


class ReplayResults:
    """A `ResultSource` over a list of results: ``advance()`` publishes the next."""

    def __init__(self, results: Sequence[FrameResult]) -> None:
        self._results = list(results)
        self._index = -1
        self.polls = 0
        self.source_status = ""  # what status() says, as a source in trouble would

    def advance(self) -> FrameResult:
        self._index = (self._index + 1) % len(self._results)
        return self._results[self._index]

    def latest(self) -> FrameResult | None:
        self.polls += 1
        return self._results[self._index] if self._index >= 0 else None

    def status(self) -> str:
        return self.source_status
