"""Five-second deployment trials: per-frame decisions, the trial's answer, outcomes, metrics.

A participant (enrolled, a visitor who is not, or an *attack*: someone holding up a photo
or screen showing an enrolled person) stands alone in front of the camera for
``duration`` seconds. Every frame inside that window gives a :class:`FrameDecision` (the
largest face's best name, its confidence, the threshold in force, the accepted name or
None, its liveness, or "no face"). The trial's answer comes from those frames by one rule:

**Decision rule (majority of face frames, confidence-weighted ties).** Only frames with a
face vote. Each votes for the name it accepted, or for "rejected"; a frame whose face the
liveness check found not live (``live is False``) votes "rejected" whatever its name,
because the door stays shut for it. The name with the most
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
attack         rejected or not live   attack_refused (TN-like: the door stayed shut)
attack         any name               FP, and counted as an accepted attack
any            no face in the window  no_face
=============  =====================  ======================================

**Metrics.** N counts every finished trial, ``no_face`` included. Accuracy =
(TP + TN) / N, so a window without a face counts as a failure; FPR = FP / (FP + TN) and
FNR = FN / (FN + TP) leave ``no_face`` trials out (they measure the recognizer, not the
detector or the participant). A refused attack counts with TN in accuracy and FPR.
APCER (the presentation-attack rate, ISO/IEC 30107-3 style) = accepted attacks / attack
trials with a face. A rate whose denominator is zero is ``None``.

Everything here is headless; :mod:`kiosk.trials.store` persists it and
``kiosk/ui/trials_panel.py`` draws it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from models.recognition import Prediction

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
    ATTACK_REFUSED = "attack_refused"


ATTACK = "attack"


@dataclass(frozen=True)
class Participant:
    """Who stands in front of the camera. An attack participant (``attack=True``, never
    ``enrolled``) presents a photo or screen of an enrolled person; its name says which,
    e.g. "photo of Ada"."""

    name: str
    enrolled: bool
    attack: bool = False

    def __post_init__(self) -> None:
        if self.attack and self.enrolled:
            raise ValueError("an attack participant is not enrolled")

    @property
    def kind(self) -> str:
        if self.attack:
            return ATTACK
        return "enrolled" if self.enrolled else NOT_ENROLLED

    @property
    def code(self) -> int:
        """The stored form of the kind: 1 enrolled, 0 not enrolled, 2 attack."""
        return 2 if self.attack else int(self.enrolled)

    @classmethod
    def from_code(cls, name: str, code: int) -> Participant:
        return cls(name, enrolled=code == 1, attack=code == 2)


@dataclass(frozen=True)
class FrameDecision:
    """One frame inside a trial's window. ``t`` is seconds since the trial started.

    ``recognizer`` names the recognizer in use and its version (``clip v3``, a
    :attr:`kiosk.live.results.RecognizerInfo.label`): the one that decided a face frame;
    "" in records made before it was kept.
    """

    t: float
    face: bool
    best: str | None = None
    confidence: float | None = None
    threshold: float = RESEARCH_THRESHOLD
    accepted: str | None = None
    live: bool | None = None  # the track's liveness: None while unknown or not checked
    recognizer: str = ""

    @property
    def named(self) -> str | None:
        """The name this frame would open the door for: accepted, and not found not live."""
        return None if self.live is False else self.accepted

    @classmethod
    def from_prediction(
        cls,
        t: float,
        prediction: Prediction | None,
        threshold: float,
        live: bool | None = None,
        recognizer: str = "",
    ) -> FrameDecision:
        if prediction is None:
            return cls(t=t, face=False, threshold=threshold, live=live, recognizer=recognizer)
        return cls(
            t=t,
            face=True,
            best=prediction.best,
            confidence=prediction.confidence,
            threshold=threshold,
            accepted=prediction.name,
            live=live,
            recognizer=recognizer,
        )

    @property
    def vetoed(self) -> bool:
        """Refused although its confidence reached its threshold: something besides the
        threshold said no (a fusion's gallery disagreeing, a naming policy)."""
        return (
            self.face
            and self.accepted is None
            and self.confidence is not None
            and self.confidence >= self.threshold
        )

    def at_threshold(self, threshold: float) -> FrameDecision:
        """The same frame judged with another reject threshold; a vetoed frame stays
        refused at every threshold."""
        if not self.face or self.confidence is None or self.vetoed:
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
        if frame.named is not None:
            votes[frame.named] += 1
            weight[frame.named] = weight.get(frame.named, 0.0) + (frame.confidence or 0.0)
    if not votes:
        return REJECTED
    name = min(votes, key=lambda n: (-votes[n], -weight[n], n))
    return name if votes[name] >= min_share * len(face_frames) else REJECTED


def outcome_for(participant: Participant, answer: str | None) -> tuple[Outcome, bool]:
    """(outcome, misidentified) for an answer from :func:`decide_answer`."""
    if answer is None:
        return Outcome.NO_FACE, False
    if participant.attack:
        return (Outcome.ATTACK_REFUSED, False) if answer == REJECTED else (Outcome.FP, False)
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
        return self.outcome in (Outcome.TP, Outcome.TN, Outcome.ATTACK_REFUSED)

    @property
    def attack_accepted(self) -> bool:
        """A presentation attack that got a name: the door would have opened for a photo."""
        return self.participant.attack and self.outcome == Outcome.FP

    @property
    def live_frames(self) -> tuple[int, int, int]:
        """Face frames found (live, not live, undecided)."""
        faces = [f for f in self.frames if f.face]
        return (
            sum(f.live is True for f in faces),
            sum(f.live is False for f in faces),
            sum(f.live is None for f in faces),
        )

    @property
    def face_frames(self) -> int:
        return sum(frame.face for frame in self.frames)

    @property
    def time_to_name(self) -> float | None:
        """Seconds into the window of the first frame that gave the answer's name."""
        if self.answer in (None, REJECTED):
            return None
        return next((f.t for f in self.frames if f.named == self.answer), None)


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
    attack_refused: int = 0
    attack_accepted: int = 0  # attacks given a name; also counted in fp

    @property
    def trials(self) -> int:
        return self.tp + self.fp + self.fn + self.tn + self.no_face + self.attack_refused

    @property
    def fractions(self) -> dict[str, tuple[int, int]]:
        """Each rate as (numerator, denominator): what its confidence interval comes from."""
        return {
            "accuracy": (self.tp + self.tn + self.attack_refused, self.trials),
            "fpr": (self.fp, self.fp + self.tn + self.attack_refused),
            "fnr": (self.fn, self.fn + self.tp),
            "apcer": (self.attack_accepted, self.attacks),
        }

    @property
    def accuracy(self) -> float | None:
        return _rate(*self.fractions["accuracy"])

    @property
    def fpr(self) -> float | None:
        return _rate(*self.fractions["fpr"])

    @property
    def attacks(self) -> int:
        """Attack trials with a face in the window."""
        return self.attack_refused + self.attack_accepted

    @property
    def apcer(self) -> float | None:
        """Accepted attacks / attack trials with a face."""
        return _rate(*self.fractions["apcer"])

    @property
    def fnr(self) -> float | None:
        return _rate(*self.fractions["fnr"])

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "no_face": self.no_face,
            "misidentified": self.misidentified,
            "attack_refused": self.attack_refused,
            "attack_accepted": self.attack_accepted,
            "trials": self.trials,
            "accuracy": self.accuracy,
            "fpr": self.fpr,
            "fnr": self.fnr,
            "apcer": self.apcer,
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
        attack_refused=counts[Outcome.ATTACK_REFUSED],
        attack_accepted=sum(result.attack_accepted for result in results),
    )


def frame_rates(results: Sequence[TrialResult]) -> dict[str, float | int | None]:
    """Per-frame figures under the trial answers: how often single frames go wrong.

    ``stranger_frames_named`` is a frame-level FPR: the share of a not-enrolled person's
    face frames that were given a name. ``enrolled_frames_*`` split enrolled people's face
    frames into their own name, someone else's, and rejected. ``attack_frames_named`` is
    the share of attack face frames that would have opened the door (named and not found
    not live); ``live_frames_not_live`` the share of real people's face frames (enrolled or
    not) that the liveness check called not live.
    """
    own = other = rejected = named = stranger = frames = faces = 0
    attack = attack_named = real = real_not_live = 0
    for result in results:
        for frame in result.frames:
            frames += 1
            if not frame.face:
                continue
            faces += 1
            if result.participant.attack:
                attack += 1
                attack_named += frame.named is not None
                continue
            real += 1
            real_not_live += frame.live is False
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
        "attack_face_frames": attack,
        "attack_frames_named": _rate(attack_named, attack),
        "live_frames_not_live": _rate(real_not_live, real),
    }


def liveness_refusals(results: Sequence[TrialResult], min_share: float = 0.5) -> dict[str, object]:
    """How often the liveness check refused real people (every participant but attacks).

    A trial is *refused by liveness* when its answer with liveness is "rejected" but the
    same frames without it would have given a name; a track *ended not live* when its
    last face frame was found not live. ``participants`` names each real participant
    with at least one trial refused by liveness.
    """
    real = [r for r in results if not r.participant.attack and r.face_frames]
    refused = [
        r
        for r in real
        if r.answer == REJECTED
        and decide_answer([replace(f, live=None) for f in r.frames], min_share) != REJECTED
    ]
    ended_not_live = undecided = 0
    for result in real:
        last = [f.live for f in result.frames if f.face][-1]
        ended_not_live += last is False
        undecided += last is None
    return {
        "tracks": len(real),
        "ended_not_live": ended_not_live,
        "ended_undecided": undecided,
        "refused_by_liveness": len(refused),
        "refused_rate": _rate(len(refused), len(real)),
        "participants": sorted({r.participant.name for r in refused}),
    }


@dataclass(frozen=True)
class ParticipantSummary:
    participant: Participant
    metrics: Metrics
    answers: dict[str, int]  # answer label -> trials


def per_participant(results: Sequence[TrialResult]) -> list[ParticipantSummary]:
    """One summary per participant: enrolled, then not enrolled, then attacks; by name."""
    by_person: dict[Participant, list[TrialResult]] = {}
    for result in results:
        by_person.setdefault(result.participant, []).append(result)
    order = sorted(by_person, key=lambda p: (not p.enrolled, p.attack, p.name))
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
    """Rows: who stood there (each enrolled name, then "not enrolled", then "attack" when
    there were attack trials). Columns: the answer (each name, "rejected", "no face")."""

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
    attacks = [ATTACK] if any(r.participant.attack for r in results) else []
    rows = [*names, NOT_ENROLLED, *attacks]
    columns = [*names, REJECTED, NO_FACE]
    counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for result in results:
        person = result.participant
        row = rows.index(person.name if person.enrolled else person.kind)
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
