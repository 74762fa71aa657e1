"""Five-second deployment trials: per-frame decisions, the trial's answer, outcomes, metrics.

A participant (enrolled, or a visitor who is not) stands alone in front of the camera for
``duration`` seconds. Every frame inside that window gives a :class:`FrameDecision` (the
largest face's best name, its confidence, the threshold in force, the accepted name or
None, or "no face"). The trial's answer comes from those frames by one rule:

**Decision rule (majority of face frames, confidence-weighted ties).** Only frames with a
face vote. Each votes for the name it accepted, or for "rejected". The name with the most
votes wins (a tie between names goes to the higher summed confidence, then to the
alphabetically first name, so the rule is deterministic) if it holds at least ``min_share``
(default one half) of the face frames; otherwise the answer is "rejected". A window with
no face at all is its own outcome, ``no_face``.

**Outcomes** (the issue's table):

=============  =====================  ======================================
participant    answer                 outcome
=============  =====================  ======================================
enrolled       their own name         TP
enrolled       someone else's name    FP, and counted as a misidentification
enrolled       rejected               FN
not enrolled   rejected               TN
not enrolled   any name               FP
either         no face in the window  no_face
=============  =====================  ======================================

**Metrics.** N counts every finished trial, ``no_face`` included. Accuracy =
(TP + TN) / N, so a window without a face counts as a failure; FPR = FP / (FP + TN) and
FNR = FN / (FN + TP) leave ``no_face`` trials out (they measure the recognizer, not the
detector or the participant). A rate whose denominator is zero is ``None``.

Everything here is headless; :mod:`kiosk.trials_store` persists it and
``kiosk/ui/trials_panel.py`` draws it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from kiosk.errors import UserError
from models.recognizer import Prediction

if TYPE_CHECKING:
    from kiosk.trials_store import TrialStore

REJECTED = "rejected"
NO_FACE = "no face"
NOT_ENROLLED = "not enrolled"
RESEARCH_THRESHOLD = 0.8  # the research's softmax reject threshold


class Outcome(StrEnum):
    TP = "TP"
    FP = "FP"
    FN = "FN"
    TN = "TN"
    NO_FACE = "no_face"


@dataclass(frozen=True)
class Participant:
    name: str
    enrolled: bool

    @property
    def kind(self) -> str:
        return "enrolled" if self.enrolled else NOT_ENROLLED


@dataclass(frozen=True)
class FrameDecision:
    """One frame inside a trial's window. ``t`` is seconds since the trial started."""

    t: float
    face: bool
    best: str | None = None
    confidence: float | None = None
    threshold: float = RESEARCH_THRESHOLD
    accepted: str | None = None
    live: bool | None = None  # liveness, once a liveness check runs in the pipeline

    @classmethod
    def from_prediction(
        cls, t: float, prediction: Prediction | None, threshold: float, live: bool | None = None
    ) -> FrameDecision:
        if prediction is None:
            return cls(t=t, face=False, threshold=threshold, live=live)
        return cls(
            t=t,
            face=True,
            best=prediction.best,
            confidence=prediction.confidence,
            threshold=threshold,
            accepted=prediction.name,
            live=live,
        )

    def at_threshold(self, threshold: float) -> FrameDecision:
        """The same frame judged with another reject threshold."""
        if not self.face or self.confidence is None:
            return replace(self, threshold=threshold)
        accepted = self.best if self.confidence >= threshold else None
        return replace(self, threshold=threshold, accepted=accepted)


def decide_answer(frames: Sequence[FrameDecision], min_share: float = 0.5) -> str | None:
    """The trial's answer: a name, ``REJECTED``, or ``None`` when no frame had a face."""
    face_frames = [frame for frame in frames if frame.face]
    if not face_frames:
        return None
    votes: Counter[str] = Counter()
    weight: dict[str, float] = {}
    for frame in face_frames:
        if frame.accepted is not None:
            votes[frame.accepted] += 1
            weight[frame.accepted] = weight.get(frame.accepted, 0.0) + (frame.confidence or 0.0)
    if not votes:
        return REJECTED
    name = min(votes, key=lambda n: (-votes[n], -weight[n], n))
    return name if votes[name] >= min_share * len(face_frames) else REJECTED


def outcome_for(participant: Participant, answer: str | None) -> tuple[Outcome, bool]:
    """(outcome, misidentified) for an answer from :func:`decide_answer`."""
    if answer is None:
        return Outcome.NO_FACE, False
    if participant.enrolled:
        if answer == participant.name:
            return Outcome.TP, False
        if answer == REJECTED:
            return Outcome.FN, False
        return Outcome.FP, True
    return (Outcome.TN, False) if answer == REJECTED else (Outcome.FP, False)


@dataclass(frozen=True)
class TrialResult:
    participant: Participant
    started_at: float  # wall-clock seconds since the epoch (or video time in a simulation)
    duration: float
    frames: tuple[FrameDecision, ...]
    answer: str | None
    outcome: Outcome
    misidentified: bool
    thumbnail: bytes | None = None  # JPEG of the most confident face
    trial_id: int | None = None
    source: str = ""  # e.g. the video clip and its time span in a simulation

    @property
    def answer_label(self) -> str:
        return NO_FACE if self.answer is None else self.answer

    @property
    def correct(self) -> bool:
        return self.outcome in (Outcome.TP, Outcome.TN)

    @property
    def face_frames(self) -> int:
        return sum(frame.face for frame in self.frames)

    @property
    def time_to_name(self) -> float | None:
        """Seconds into the window of the first frame that gave the answer's name."""
        if self.answer in (None, REJECTED):
            return None
        return next((f.t for f in self.frames if f.accepted == self.answer), None)


def judge(
    participant: Participant,
    frames: Sequence[FrameDecision],
    *,
    started_at: float,
    duration: float,
    min_share: float = 0.5,
    thumbnail: bytes | None = None,
    source: str = "",
) -> TrialResult:
    answer = decide_answer(frames, min_share)
    outcome, misidentified = outcome_for(participant, answer)
    return TrialResult(
        participant=participant,
        started_at=started_at,
        duration=duration,
        frames=tuple(frames),
        answer=answer,
        outcome=outcome,
        misidentified=misidentified,
        thumbnail=thumbnail,
        source=source,
    )


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Metrics:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    no_face: int = 0
    misidentified: int = 0

    @property
    def trials(self) -> int:
        return self.tp + self.fp + self.fn + self.tn + self.no_face

    @property
    def accuracy(self) -> float | None:
        return _rate(self.tp + self.tn, self.trials)

    @property
    def fpr(self) -> float | None:
        return _rate(self.fp, self.fp + self.tn)

    @property
    def fnr(self) -> float | None:
        return _rate(self.fn, self.fn + self.tp)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "no_face": self.no_face,
            "misidentified": self.misidentified,
            "trials": self.trials,
            "accuracy": self.accuracy,
            "fpr": self.fpr,
            "fnr": self.fnr,
        }


def summarize(results: Iterable[TrialResult]) -> Metrics:
    results = list(results)
    counts = Counter(result.outcome for result in results)
    return Metrics(
        tp=counts[Outcome.TP],
        fp=counts[Outcome.FP],
        fn=counts[Outcome.FN],
        tn=counts[Outcome.TN],
        no_face=counts[Outcome.NO_FACE],
        misidentified=sum(result.misidentified for result in results),
    )


def frame_rates(results: Sequence[TrialResult]) -> dict[str, float | int | None]:
    """Per-frame figures under the trial answers: how often single frames go wrong.

    ``stranger_frames_named`` is a frame-level FPR: the share of a not-enrolled person's
    face frames that were given a name. ``enrolled_frames_*`` split enrolled people's face
    frames into their own name, someone else's, and rejected.
    """
    own = other = rejected = named = stranger = frames = faces = 0
    for result in results:
        for frame in result.frames:
            frames += 1
            if not frame.face:
                continue
            faces += 1
            if not result.participant.enrolled:
                stranger += 1
                named += frame.accepted is not None
            elif frame.accepted is None:
                rejected += 1
            elif frame.accepted == result.participant.name:
                own += 1
            else:
                other += 1
    enrolled = own + other + rejected
    return {
        "frames": frames,
        "face_frames": faces,
        "enrolled_frames_own_name": _rate(own, enrolled),
        "enrolled_frames_other_name": _rate(other, enrolled),
        "enrolled_frames_rejected": _rate(rejected, enrolled),
        "stranger_face_frames": stranger,
        "stranger_frames_named": _rate(named, stranger),
    }


@dataclass(frozen=True)
class ParticipantSummary:
    participant: Participant
    metrics: Metrics
    answers: dict[str, int]  # answer label -> trials


def per_participant(results: Sequence[TrialResult]) -> list[ParticipantSummary]:
    """One summary per participant, enrolled first, then by name."""
    by_person: dict[Participant, list[TrialResult]] = {}
    for result in results:
        by_person.setdefault(result.participant, []).append(result)
    order = sorted(by_person, key=lambda p: (not p.enrolled, p.name))
    return [
        ParticipantSummary(
            participant=p,
            metrics=summarize(by_person[p]),
            answers=dict(Counter(r.answer_label for r in by_person[p])),
        )
        for p in order
    ]


@dataclass(frozen=True)
class ConfusionMatrix:
    """Rows: who stood there (each enrolled name, then "not enrolled"). Columns: the answer
    (each name, then "rejected", then "no face")."""

    rows: list[str]
    columns: list[str]
    counts: np.ndarray  # (rows, columns) int

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "columns": self.columns, "counts": self.counts.tolist()}


def confusion_matrix(
    results: Sequence[TrialResult], enrolled: Sequence[str] = ()
) -> ConfusionMatrix:
    names = sorted(
        set(enrolled)
        | {r.participant.name for r in results if r.participant.enrolled}
        | {r.answer for r in results if r.answer not in (None, REJECTED)}
    )
    rows = [*names, NOT_ENROLLED]
    columns = [*names, REJECTED, NO_FACE]
    counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for result in results:
        row = rows.index(result.participant.name if result.participant.enrolled else NOT_ENROLLED)
        counts[row, columns.index(result.answer_label)] += 1
    return ConfusionMatrix(rows=rows, columns=columns, counts=counts)


def rejudge(result: TrialResult, threshold: float, min_share: float = 0.5) -> TrialResult:
    """The trial as it would have ended with another reject threshold (from its saved frames)."""
    frames = [frame.at_threshold(threshold) for frame in result.frames]
    answer = decide_answer(frames, min_share)
    outcome, misidentified = outcome_for(result.participant, answer)
    return replace(
        result, frames=tuple(frames), answer=answer, outcome=outcome, misidentified=misidentified
    )


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    metrics: Metrics


@dataclass(frozen=True)
class ThresholdSweep:
    points: list[SweepPoint]
    current: float  # the threshold the trials ran with
    target_fpr: float
    meets_target: float | None  # the lowest threshold whose FPR <= target_fpr

    def as_dict(self) -> dict[str, object]:
        return {
            "current": self.current,
            "target_fpr": self.target_fpr,
            "meets_target": self.meets_target,
            "points": [{"threshold": p.threshold, **p.metrics.as_dict()} for p in self.points],
        }


def sweep_thresholds(
    results: Sequence[TrialResult],
    *,
    current: float,
    target_fpr: float = 0.02,
    min_share: float = 0.5,
    steps: int = 101,
) -> ThresholdSweep:
    """FPR and FNR of the saved trials re-decided at each threshold.

    The grid spans the saved confidences (and ``current`` and 0.8), so it suits softmax
    probabilities and cosine similarities alike. The lowest threshold meeting the target
    FPR is the one that rejects the fewest enrolled people.
    """
    confidences = [
        f.confidence for r in results for f in r.frames if f.face and f.confidence is not None
    ]
    low = min([*confidences, current, RESEARCH_THRESHOLD, 0.0])
    high = max([*confidences, current, RESEARCH_THRESHOLD, 1.0])
    grid = sorted({*np.linspace(low, high, steps).round(4).tolist(), current, RESEARCH_THRESHOLD})
    points = [SweepPoint(t, summarize([rejudge(r, t, min_share) for r in results])) for t in grid]
    meets = [
        p.threshold for p in points if p.metrics.fpr is not None and p.metrics.fpr <= target_fpr
    ]
    return ThresholdSweep(
        points=points, current=current, target_fpr=target_fpr, meets_target=min(meets, default=None)
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

    With a :class:`~kiosk.trials_store.TrialStore` every participant, trial and frame is
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
    ) -> None:
        if duration <= 0:
            raise UserError(f"trial duration must be positive, got {duration}")
        if not 0.0 < min_share <= 1.0:
            raise UserError(f"min_share must be in (0, 1], got {min_share}")
        self.duration = duration
        self.threshold = threshold
        self.min_share = min_share
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

    def add_participant(self, name: str, enrolled: bool) -> Participant:
        with self._lock:
            if self.active is not None:
                raise UserError("a trial is in progress; add participants between trials")
            name = name.strip()
            if not name:
                raise UserError("a participant needs a name")
            if any(p.name == name for p in self.participants):
                raise UserError(f"{name!r} is already on the roster")
            participant = Participant(name, enrolled)
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

    def is_due(self, now: float) -> bool:
        """True once the active trial's window has elapsed."""
        return self.active is not None and now >= self.active.start + self.active.duration

    def add_frame(
        self,
        now: float,
        prediction: Prediction | None,
        face_crop: np.ndarray | None = None,
        live: bool | None = None,
    ) -> FrameDecision | None:
        """Record one frame of the active trial; frames outside its window are ignored."""
        with self._lock:
            active = self.active
            if active is None or not active.start <= now < active.start + active.duration:
                return None
            frame = FrameDecision.from_prediction(
                now - active.start, prediction, self.threshold, live
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


def encode_thumbnail(crop: np.ndarray, size: int = 64) -> bytes | None:
    import cv2

    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(data.tobytes()) if ok else None
