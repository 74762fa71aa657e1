"""One trial session: a roster and its trials, run one at a time while frames arrive from
the live pipeline's thread; every participant, trial and frame is written to the trials
store as it happens.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from kiosk.live.results import FrameResult, TrackView
from models.errors import UserError
from models.names import name_key
from models.recognition import Prediction

if TYPE_CHECKING:
    from kiosk.trials.store import TrialStore
from kiosk.trials.rules import (
    RESEARCH_THRESHOLD,
    ConfusionMatrix,
    FrameDecision,
    Metrics,
    Participant,
    TrialResult,
    confusion_matrix,
    judge,
    summarize,
)


@dataclass
class ActiveTrial:
    participant: Participant
    started_at: float  # wall-clock
    start: float  # the clock the frames' timestamps use (monotonic, or video time)
    duration: float
    frames: list[FrameDecision] = field(default_factory=list)
    thumbnail: bytes | None = None
    best_confidence: float = -np.inf
    trial_id: int | None = None
    source: str = ""

    def remaining(self, now: float) -> float:
        return max(0.0, self.start + self.duration - now)


class TrialSession:
    """A roster and its finished trials; runs one trial at a time.

    With a :class:`~kiosk.trials.store.TrialStore` every participant, trial and frame is
    written as it happens; a trial becomes durable when it finishes. The methods that
    change the session hold one lock, so the pipeline's thread may add frames while the
    window's thread starts and finishes trials.
    """

    def __init__(
        self,
        *,
        duration: float = 5.0,
        threshold: float = RESEARCH_THRESHOLD,
        min_share: float = 0.5,
        store: TrialStore | None = None,
        session_id: int | None = None,
        participants: Sequence[Participant] = (),
        results: Sequence[TrialResult] = (),
        recognizer: str = "",
    ) -> None:
        if duration <= 0:
            raise UserError(f"trial duration must be positive, got {duration}")
        if not 0.0 < min_share <= 1.0:
            raise UserError(f"min_share must be in (0, 1], got {min_share}")
        self.duration = duration
        self.threshold = threshold
        self.min_share = min_share
        self.recognizer = recognizer  # what the session ran with, e.g. "clip RN50 (openai)"
        self.store = store
        self.session_id = session_id
        self.participants: list[Participant] = list(participants)
        self.results: list[TrialResult] = list(results)
        self.active: ActiveTrial | None = None
        self._lock = threading.RLock()

    def participant(self, name: str) -> Participant:
        for participant in self.participants:
            if participant.name == name:
                return participant
        raise UserError(f"{name!r} is not on the roster; add them first")

    def add_participant(self, name: str, enrolled: bool, attack: bool = False) -> Participant:
        with self._lock:
            if self.active is not None:
                raise UserError("a trial is in progress; add participants between trials")
            name = name.strip()
            if not name:
                raise UserError("a participant needs a name")
            if any(p.name == name for p in self.participants):
                raise UserError(f"{name!r} is already on the roster")
            participant = Participant(name, enrolled, attack)
            if self.store is not None and self.session_id is not None:
                self.store.add_participant(self.session_id, participant)
            self.participants.append(participant)
            return participant

    def start(
        self,
        name: str,
        *,
        now: float,
        wall_clock: float,
        source: str = "",
        duration: float | None = None,
    ) -> ActiveTrial:
        """Open a trial window at ``now``; ``duration`` overrides the session's (a short clip)."""
        with self._lock:
            if self.active is not None:
                raise UserError("a trial is already running; wait for it to end")
            participant = self.participant(name)
            length = self.duration if duration is None else duration
            trial_id = None
            if self.store is not None and self.session_id is not None:
                trial_id = self.store.begin_trial(self.session_id, participant, wall_clock, length)
            self.active = ActiveTrial(
                participant, wall_clock, now, length, trial_id=trial_id, source=source
            )
            return self.active

    def forget(self, names: Collection[str]) -> bool:
        """Take these people off the roster (they were erased; names matched under
        :func:`~models.names.name_key`): no trial can be started for them any more, and
        a trial of theirs in progress is dropped, never recorded. Whether one was. Their
        finished trials stay, for the erasure to anonymise in the store."""
        keys = {name_key(name) for name in names}
        with self._lock:
            self.participants = [p for p in self.participants if name_key(p.name) not in keys]
            active = self.active
            if active is None or name_key(active.participant.name) not in keys:
                return False
            if self.store is not None and active.trial_id is not None:
                self.store.abandon_trial()
            self.active = None
            return True

    def reload_results(self) -> None:
        """The finished trials as the store holds them now: after an erasure, anonymised
        (a session without a store keeps its own). Between trials only."""
        with self._lock:
            if self.active is not None:
                raise UserError("a trial is in progress; wait for it to end")
            if self.store is not None and self.session_id is not None:
                self.results = self.store.load_session(self.session_id).results

    def is_due(self, now: float) -> bool:
        """True once the active trial's window has elapsed."""
        return self.active is not None and now >= self.active.start + self.active.duration

    def add_frame(
        self,
        now: float,
        prediction: Prediction | None,
        face_crop: np.ndarray | None = None,
        live: bool | None = None,
        recognizer: str = "",
    ) -> FrameDecision | None:
        """Record one frame of the active trial; frames outside its window are ignored.
        ``recognizer`` names what decided it (a ``RecognizerInfo.label``, ``clip v3``)."""
        with self._lock:
            active = self.active
            if active is None or not active.start <= now < active.start + active.duration:
                return None
            frame = FrameDecision.from_prediction(
                now - active.start, prediction, self.threshold, live, recognizer
            )
            active.frames.append(frame)
            if self.store is not None and active.trial_id is not None:
                self.store.add_frame(active.trial_id, frame)
            if (
                frame.face
                and face_crop is not None
                and (frame.confidence or 0.0) > active.best_confidence
            ):
                active.best_confidence = frame.confidence or 0.0
                active.thumbnail = encode_thumbnail(face_crop)
            return frame

    def finish(self) -> TrialResult:
        with self._lock:
            active = self.active
            if active is None:
                raise UserError("no trial is running")
            result = judge(
                active.participant,
                active.frames,
                started_at=active.started_at,
                duration=active.duration,
                min_share=self.min_share,
                thumbnail=active.thumbnail,
                source=active.source,
            )
            if self.store is not None and active.trial_id is not None:
                self.store.finish_trial(active.trial_id, result)
                result = replace(result, trial_id=active.trial_id)
            self.active = None
            self.results.append(result)
            return result

    def metrics(self) -> Metrics:
        return summarize(self.results)

    def enrolled_names(self) -> list[str]:
        return [p.name for p in self.participants if p.enrolled]

    def confusion(self) -> ConfusionMatrix:
        return confusion_matrix(self.results, self.enrolled_names())


def track_live(view: TrackView, liveness: bool) -> bool | None:
    """A track's liveness as a trial records it: False when the pipeline drew it not live;
    True when a liveness check runs and the track was named (only a live track may be);
    otherwise None (undecided, or no liveness check)."""
    if view.state == "not_live":
        return False
    return True if liveness and view.state == "recognized" else None


def record_live_result(
    session: TrialSession, result: FrameResult, *, liveness: bool
) -> FrameDecision | None:
    """Add one live-pipeline result to the session's active trial (any thread).

    The largest face stands for the participant; its newest single-frame prediction
    (``TrackView.raw_best``/``raw_confidence``, not the track's voted label) is judged
    with the session's threshold, and a name the recognizer itself refused
    (``raw_refused``: a fusion whose gallery disagreed) stays refused. A frame without a
    face is a "no face" frame. Every frame records the recognizer in use
    (``result.recognizer.label``).
    """
    label = result.recognizer.label
    if not result.tracks:
        return session.add_frame(result.captured_at, None, recognizer=label)
    track = max(result.tracks, key=lambda t: (t.box[2] - t.box[0]) * (t.box[3] - t.box[1]))
    if track.raw_best is None or track.raw_confidence is None:
        return None  # a face the recognizer has not answered for: it adds no evidence
    confidence = track.raw_confidence
    accepted = confidence >= session.threshold and not track.raw_refused
    name = track.raw_best if accepted else None
    x1, y1, x2, y2 = (max(0, int(v)) for v in track.box)
    crop = result.frame[y1:y2, x1:x2]
    return session.add_frame(
        result.captured_at,
        Prediction(name, track.raw_best, confidence),
        face_crop=crop if crop.size else None,
        live=track_live(track, liveness),
        recognizer=label,
    )


def encode_thumbnail(crop: np.ndarray, size: int = 64) -> bytes | None:
    import cv2

    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(data.tobytes()) if ok else None
