"""Immutable results the live pipeline publishes and the windows draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

TrackState = Literal["pending", "recognized", "unknown", "not_live"]


@dataclass(frozen=True)
class TrackView:
    """One tracked face as the window shows it."""

    track_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    label: str  # a name, or "Unknown" while pending or rejected
    confidence: float
    state: TrackState
    # The newest single-frame prediction behind the vote (trials record it per frame):
    # the best name and its confidence, None before the first prediction.
    raw_best: str | None = None
    raw_confidence: float | None = None
    # True when the recognizer refused that name (under its threshold, or vetoed: a
    # fusion's gallery disagreeing with CLIP).
    raw_refused: bool = False
    prompt: str = ""  # what the person is asked to do, e.g. "Please turn your head slightly"


@dataclass(frozen=True)
class RecognizerInfo:
    """Which recognizer decided a frame, for the operator's view and the trials' records."""

    kind: str = ""  # "clip", "embedding_gallery", "fusion"; "" when nobody is enrolled
    version: int = 0  # the CLIP bundle's version, or the gallery's rebuild count
    trained_at: str = ""  # when the CLIP bundle was trained (ISO 8601, UTC)
    people: int = 0
    update: str = ""  # what is being done about it, e.g. "retraining: about 20 s left"

    @property
    def label(self) -> str:
        """``clip v7`` and the like: recognizer and version, as a per-frame record names them."""
        return f"{self.kind} v{self.version}" if self.kind else "nobody enrolled"


@dataclass(frozen=True)
class FrameResult:
    """Everything known about one processed frame."""

    frame_index: int
    frame: NDArray[np.uint8]  # BGR
    captured_at: float  # time.monotonic() when the source produced the frame
    tracks: tuple[TrackView, ...]
    stage_ms: dict[str, float] = field(default_factory=dict)  # decode, detect, align, ...
    fps: float = 0.0
    dropped_frames: int = 0
    providers: tuple[str, ...] = ()
    source_status: str = ""  # e.g. "camera 0 lost, reconnecting in 4 s"
    published_at: float = 0.0  # time.monotonic() when the result was published
    notice: str = ""  # recognizer or event-log trouble, e.g. "nobody is enrolled"
    recognizer: RecognizerInfo = field(default_factory=RecognizerInfo)
    # time.monotonic() when the newest door event (a recognized person, logged and handed
    # to the door hooks) happened, 0.0 before any: the door screen's "door open" sign.
    door_event_at: float = 0.0

    @property
    def latency_ms(self) -> float:
        """Frame captured to result published."""
        return (self.published_at - self.captured_at) * 1000.0
