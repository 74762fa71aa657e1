"""IoU tracking across frames and a per-track, confidence-weighted vote over time.

A track is named only when, within its last ``window`` frames, at least ``min_frames``
frames voted for that name and the name outweighs every other answer (other names and
"unknown"); a single frame never names anyone. Symmetrically, a track becomes
``unknown`` when rejections win with ``min_frames`` votes. Until then it is ``pending``.
A decision holds until another answer meets the same bar, so labels do not flicker.

Votes are weighted by how decisive each frame was: an accepted frame by its confidence,
a rejected frame by one minus its confidence (clipped to [0.05, 1]).

Once a track is decided, its face is classified only every ``reclassify_every`` frames
(the costly step: CLIP RN50's image tower, 30 to 70 ms a face on 2 cores); detection
and tracking still run on every frame. A change of mind then needs ``min_frames`` fresh
votes as before. An undecided track is classified on its first frame and then every
``pending_every`` frames (every frame by default), and ``max_classify`` caps the faces
classified in one frame (undecided tracks first, then those waiting longest): both trade
a later decision for frames that never wait on several tower passes. Neither changes
what a decision needs, so one frame still never names anyone.

A ``veto`` (for liveness, say) is asked about every track on every frame; a vetoed track
is shown as ``not_live`` and is never named while the veto holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from kiosk.live.results import TrackState, TrackView
from models.detector import Face
from models.recognition import Prediction

UNKNOWN_LABEL = "Unknown"
_MIN_WEIGHT = 0.05


Classify = Callable[[Sequence[int]], Sequence[Prediction]]


class TrackVeto(Protocol):
    """True when the face of ``track_id`` in ``frame`` must not be named (e.g. not live)."""

    def __call__(self, track_id: int, frame: NDArray[np.uint8], face: Face) -> bool: ...


@dataclass(frozen=True)
class TrackerSettings:
    min_frames: int = 3
    window: int = 8
    iou_threshold: float = 0.3
    max_missed: int = 10  # frames a track survives without a matching face
    reclassify_every: int = 1  # a decided track's face is classified every n-th frame
    pending_every: int = 1  # an undecided track's face is classified every n-th frame
    max_classify: int = 0  # faces classified in one frame at most; 0: every face due

    def __post_init__(self) -> None:
        if not 2 <= self.min_frames <= self.window:  # one frame must never name anyone
            raise ValueError(f"need 2 <= min_frames <= window, got {self}")
        if self.reclassify_every < 1 or self.pending_every < 1:
            raise ValueError(f"reclassify_every and pending_every must be at least 1, got {self}")
        if self.max_classify < 0:
            raise ValueError(f"max_classify must be 0 (no cap) or more, got {self}")


@dataclass(frozen=True)
class TrackUpdate:
    """One track seen in this frame. ``announce`` is True on the frame it gets a name."""

    view: TrackView
    face: Face
    announce: bool


@dataclass
class _Track:
    track_id: int
    box: NDArray[np.float32]
    votes: deque[tuple[str | None, float]]  # (name or None for rejected, weight)
    decision: str | None = None  # a name, UNKNOWN_LABEL, or None while pending
    confidence: float = 0.0  # of the decided name
    last_confidence: float = 0.0  # of the newest prediction
    last_best: str | None = None  # the newest prediction's best name
    last_refused: bool = False  # whether the newest prediction refused that name
    missed: int = 0
    since_vote: int = 0  # frames since the last prediction
    announced: set[str] = field(default_factory=set)


def iou(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    tracks: Sequence[NDArray[np.floating]], faces: Sequence[NDArray[np.floating]], threshold: float
) -> dict[int, int]:
    """Greedy matching, best IoU first: face index -> track index. Pairs under the
    ``threshold`` stay unmatched; each track and each face is matched at most once."""
    pairs = sorted(
        (
            (iou(track, face), i, t)
            for t, track in enumerate(tracks)
            for i, face in enumerate(faces)
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    matches: dict[int, int] = {}
    used: set[int] = set()
    for overlap, i, t in pairs:
        if overlap < threshold:
            break
        if i in matches or t in used:
            continue
        matches[i] = t
        used.add(t)
    return matches


def vote_weight(prediction: Prediction) -> float:
    weight = prediction.confidence if prediction.name is not None else 1.0 - prediction.confidence
    return float(min(1.0, max(_MIN_WEIGHT, weight)))


class Tracker:
    def __init__(self, settings: TrackerSettings, veto: TrackVeto | None = None) -> None:
        self.settings = settings
        self.veto = veto
        self._tracks: list[_Track] = []
        self._next_id = 1

    def retain_names(self, allowed: set[str]) -> None:
        """Forget every decision, vote and announcement of a name not in ``allowed`` (a
        person erased or renamed): such a track is pending again, and decides afresh."""
        for track in self._tracks:
            if track.decision not in (None, UNKNOWN_LABEL) and track.decision not in allowed:
                track.decision = None
                track.confidence = 0.0
            kept = [(name, w) for name, w in track.votes if name is None or name in allowed]
            if len(kept) != len(track.votes):
                track.votes.clear()
                track.votes.extend(kept)
            if track.last_best is not None and track.last_best not in allowed:
                track.last_best = None
            track.announced &= allowed

    @property
    def active_tracks(self) -> int:
        return len(self._tracks)

    def update(
        self,
        frame: NDArray[np.uint8],
        faces: Sequence[Face],
        classify: Classify,
    ) -> list[TrackUpdate]:
        """Match faces to tracks, vote, and return the tracks seen in this frame.

        ``classify(indices)`` must return one prediction for each face at ``indices``.
        The tracker asks for an undecided track's face every ``pending_every`` frames
        (and on its first), for a decided track's only every ``reclassify_every`` frames
        (the decision stands in between), and for ``max_classify`` faces at most.
        """
        matches = self._match(faces)
        matched_tracks = {id(track) for track in matches.values()}
        for track in self._tracks:
            if id(track) not in matched_tracks:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.settings.max_missed]
        tracks = [matches.get(i) or self._new_track(face) for i, face in enumerate(faces)]
        due = self._within_budget([i for i, track in enumerate(tracks) if self._due(track)], tracks)
        predictions: dict[int, Prediction] = {}
        if due:
            answers = list(classify(due))
            if len(answers) != len(due):
                raise ValueError(f"classify gave {len(answers)} predictions for {len(due)} faces")
            predictions = dict(zip(due, answers, strict=True))
        updates = []
        for i, (face, track) in enumerate(zip(faces, tracks, strict=True)):
            track.box = face.box
            track.missed = 0
            track.since_vote += 1
            prediction = predictions.get(i)
            if prediction is not None:
                track.votes.append((prediction.name, vote_weight(prediction)))
                track.last_confidence = prediction.confidence
                track.last_best = prediction.best
                track.last_refused = prediction.name is None
                track.since_vote = 0
            updates.append(self._decide(track, frame, face))
        return updates

    def _due(self, track: _Track) -> bool:
        if track.decision is None:
            return not track.votes or track.since_vote + 1 >= self.settings.pending_every
        return track.since_vote + 1 >= self.settings.reclassify_every

    def _within_budget(self, due: list[int], tracks: Sequence[_Track]) -> list[int]:
        """At most ``max_classify`` of the faces due: undecided tracks first, then the
        longest since their last vote, then the larger face (the detector's order)."""
        cap = self.settings.max_classify
        if not cap or len(due) <= cap:
            return due
        ranked = sorted(
            due, key=lambda i: (tracks[i].decision is not None, -tracks[i].since_vote, i)
        )
        return sorted(ranked[:cap])

    def _new_track(self, face: Face) -> _Track:
        track = _Track(self._next_id, face.box, deque(maxlen=self.settings.window))
        self._next_id += 1
        self._tracks.append(track)
        return track

    def _match(self, faces: Sequence[Face]) -> dict[int, _Track]:
        boxes = [track.box for track in self._tracks]
        matches = match_boxes(boxes, [face.box for face in faces], self.settings.iou_threshold)
        return {i: self._tracks[t] for i, t in matches.items()}

    def _decide(self, track: _Track, frame: NDArray[np.uint8], face: Face) -> TrackUpdate:
        x1, y1, x2, y2 = (float(v) for v in face.box)
        box = (x1, y1, x2, y2)
        raw = (
            track.last_best,
            None if track.last_best is None else track.last_confidence,
            track.last_refused,
        )
        if self.veto is not None and self.veto(track.track_id, frame, face):
            track.decision = None
            view = TrackView(
                track.track_id, box, UNKNOWN_LABEL, track.last_confidence, "not_live", *raw
            )
            return TrackUpdate(view, face, announce=False)
        totals: dict[str | None, float] = {}
        counts: dict[str | None, int] = {}
        for name, weight in track.votes:
            totals[name] = totals.get(name, 0.0) + weight
            counts[name] = counts.get(name, 0) + 1
        announce = False
        # No votes yet (not classified this frame for want of budget, or all of them were
        # for an erased name): nothing to decide on, the decision stands.
        winner = max(totals, key=lambda name: totals[name]) if totals else None
        if totals and counts[winner] >= self.settings.min_frames:
            decided = UNKNOWN_LABEL if winner is None else winner
            if winner is not None and decided != track.decision:
                announce = winner not in track.announced
                track.announced.add(winner)
            track.decision = decided
            if winner is not None:
                # a named vote's weight is its confidence: their mean is the shown confidence
                track.confidence = float(np.mean([w for n, w in track.votes if n == winner]))
        state: TrackState
        if track.decision is None:
            state, label, confidence = "pending", UNKNOWN_LABEL, track.last_confidence
        elif track.decision == UNKNOWN_LABEL:
            state, label, confidence = "unknown", UNKNOWN_LABEL, track.last_confidence
        else:
            state, label, confidence = "recognized", track.decision, track.confidence
        view = TrackView(track.track_id, box, label, confidence, state, *raw)
        return TrackUpdate(view, face, announce)
