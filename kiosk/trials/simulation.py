"""Offline deployment trials over video clips: the project's deployment benchmark.

One clip per participant. Enrolled participants are enrolled from the first
``enroll_seconds`` of their clip by the wizard's own capture logic
(:func:`enroll.session.capture_from_frames`: one face, score, size, brightness,
sharpness, pose and duplicate gates, from ``[enroll]``), keeping every photo it takes in
that time; a clip that gives none is skipped and reported with the gate that refused
most of its frames. Its photos are 224 px crops on the ArcFace template, from which each
recognizer is built (:mod:`kiosk.trials.recognizers`: the gallery, the finetuned CLIP,
the fusion); several recognizers run over the same frames, each into its own session,
every frame recording the recognizer and version that decided it. The rest of the clip
(never overlapping the enrollment frames) is cut into consecutive ``duration``-second
windows, one trial each. A clip whose rest is shorter than one window gives one shorter
trial; a trailing part shorter than a window is otherwise dropped. Visitors' (not
enrolled) clips are cut the same way from their start. Frames are taken every
``stride``-th frame, so the run is deterministic.

The trials run through :class:`~kiosk.trials.session.TrialSession`, the same logic the live
console uses, with the video's own time as the clock.

Liveness: with a :class:`~kiosk.live.liveness.LivenessMonitor` each trial window is one track
(a person stepping up); every face frame records the track's verdict (live True, False,
or None while undecided) and a frame found not live votes "rejected". Every clip shows
a live person, so :func:`kiosk.trials.rules.liveness_refusals` counts the trials (and the
participants) that the liveness check wrongly refused.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from enroll.config import EnrollConfig
from kiosk.trials.recognizers import Built, CannotBuild, RecognizerFactory
from kiosk.trials.session import TrialSession
from models.detector import Face, FaceDetector
from models.errors import UserError
from models.recognition import Recognizer

if TYPE_CHECKING:
    from kiosk.live.liveness import LivenessMonitor

DEFAULT_ENROLLED = ("solo_01", "solo_02", "solo_03", "solo_04", "solo_05", "solo_06")
DEFAULT_VISITORS = ("solo_07", "solo_08", "hamilton")


@dataclass(frozen=True)
class Clip:
    name: str  # the participant's name
    path: Path
    enrolled: bool


def clip_frames(
    path: Path, start: float = 0.0, end: float | None = None, stride: int = 1
) -> Iterator[tuple[int, float, NDArray[np.uint8]]]:
    """(frame index, seconds, BGR frame) for every ``stride``-th frame in [start, end)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            t = index / fps
            if end is not None and t >= end:
                return
            if t >= start and index % stride == 0:
                yield index, t, np.asarray(frame, dtype=np.uint8)
            index += 1
    finally:
        capture.release()


def clip_length(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    capture.release()
    return float(frames / fps)


GATES = {  # enroll/session.py's capture gates, as a report names them
    "one_face": "not exactly one face",
    "score": "detector score too low",
    "size": "face too small",
    "brightness": "too dark or too bright",
    "sharpness": "blurred",
    "pose": "not the pose asked for",
    "duplicate": "too like a photo already taken",
}


@dataclass(frozen=True)
class Enrollment:
    """The wizard's capture over a clip's first seconds: its photos, the frames it saw,
    and how many of them each gate refused."""

    photos: list[NDArray[np.uint8]]
    frames: int
    gates: dict[str, int]
    # The poses asked for while the pose gate refused frames, and how often each.
    poses_asked: dict[str, int] = field(default_factory=dict)

    def asked(self, gate: str) -> str:
        """For the pose gate, the poses it waited for (``'front'``, most often first);
        "" for every other gate."""
        if gate != "pose" or not self.poses_asked:
            return ""
        poses = sorted(self.poses_asked, key=lambda pose: -self.poses_asked[pose])
        return "/".join(f"'{pose}'" for pose in poses)

    def gate_name(self, gate: str) -> str:
        """A gate as a report names it: ``pose 'front'`` for the pose gate, else its name."""
        asked = self.asked(gate)
        return f"{gate} {asked}" if asked else gate

    @property
    def blocked_most(self) -> str | None:
        """The gate that refused the most frames (ties: the earlier gate)."""
        order = list(GATES)
        return min(
            self.gates,
            key=lambda g: (-self.gates[g], order.index(g) if g in order else len(order)),
            default=None,
        )


def enroll_from_video(
    path: Path, detector: FaceDetector, seconds: float, config: EnrollConfig
) -> Enrollment:
    """The wizard's capture over the first ``seconds`` of a clip."""
    from enroll.session import CaptureEvent, capture_from_frames

    gates: Counter[str] = Counter()
    poses: Counter[str] = Counter()
    seen = 0

    def count(event: CaptureEvent) -> None:
        nonlocal seen
        seen += 1
        if event.gate is not None:
            gates[event.gate] += 1
        if event.gate == "pose" and event.target is not None:
            poses[event.target] += 1

    frames = (frame for _, _, frame in clip_frames(path, 0.0, seconds))
    capture = capture_from_frames(frames, detector.detect, config, on_event=count)
    photos = [photo.crop for photo in capture.photos]
    return Enrollment(photos, seen, dict(gates), dict(poses))


@dataclass(frozen=True)
class SkippedClip:
    """An enrolled participant's clip whose first seconds gave the capture no photo."""

    clip: Clip
    seconds: float
    enrollment: Enrollment

    def as_dict(self) -> dict[str, object]:
        enrollment = self.enrollment
        gate = enrollment.blocked_most
        return {
            "name": self.clip.name,
            "file": self.clip.path.name,
            "enroll_seconds": self.seconds,
            "frames": enrollment.frames,
            "photos": 0,
            "blocked_most": gate,
            "blocked_by": None if gate is None else enrollment.gate_name(gate),
            "gates": dict(sorted(enrollment.gates.items(), key=lambda item: -item[1])),
            "poses_asked": enrollment.poses_asked,
        }

    @property
    def message(self) -> str:
        frames, gates = self.enrollment.frames, self.enrollment.gates
        gate = self.enrollment.blocked_most
        if gate is None:
            why = f"no frame in {frames} was refused by a gate"
        else:
            asked = self.enrollment.asked(gate)
            where = f"the {gate} gate" + (f" {asked}" if asked else "")
            what = GATES.get(gate, gate)
            why = f"{where} ({what}) blocked most: {gates[gate]} of {frames} frames"
        others = ", ".join(f"{g} {n}" for g, n in sorted(gates.items(), key=lambda i: -i[1]))
        return (
            f"skipped {self.clip.name} ({self.clip.path.name}): no frame of its first"
            f" {self.seconds:g} s passed the enrollment capture's gates; {why}"
            + (f" (every gate: {others})" if len(gates) > 1 else "")
        )


def trial_windows(start: float, length: float, duration: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``duration`` seconds in [start, length)."""
    rest = length - start
    if rest <= 0:
        return []
    count = int(rest // duration)
    if count == 0:
        return [(start, length)]
    return [(start + i * duration, start + (i + 1) * duration) for i in range(count)]


HELD_OUT = " (held out)"


@dataclass
class Contender:
    """One recognizer of a simulation: how it is built, the session its trials go into,
    and what was built (``builds``: one record per recognizer, the first from everyone,
    then one per held-out person) and how long it all took."""

    factory: RecognizerFactory
    session: TrialSession
    builds: list[dict[str, Any]] = field(default_factory=list)
    held_out_skipped: list[dict[str, str]] = field(default_factory=list)
    build_s: float = 0.0
    trials_s: float = 0.0
    frames: int = 0

    @property
    def name(self) -> str:
        return self.factory.name

    def build(self, photos: dict[str, list[NDArray[np.uint8]]], held_out: str | None) -> Built:
        """A recognizer of ``photos``, its version the next one, its label recorded."""
        from kiosk.live.holder import recognizer_info

        version = len(self.builds) + 1
        tick = time.perf_counter()
        built = self.factory(photos, version)
        seconds = time.perf_counter() - tick
        self.build_s += seconds
        label = recognizer_info(built.recognizer, version).label
        self.builds.append(
            {
                "label": label,
                "held_out": held_out,
                **built.details,
                "build_s": round(seconds, 2),
            }
        )
        return built

    @property
    def label(self) -> str:
        """The label of the recognizer built from everyone."""
        return str(self.builds[0]["label"]) if self.builds else self.name


@dataclass(frozen=True)
class SimulationResult:
    enroll_s: float
    enrollments: dict[str, Enrollment]
    skipped: list[SkippedClip]
    contenders: list[Contender]
    liveness_checks: int = 0

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.contenders)


class _ClipRunner:
    """Runs one clip's trial windows; remembers each frame's face so a rerun skips detection."""

    def __init__(
        self,
        detector: FaceDetector,
        stride: int,
        progress: Callable[[str], None] | None,
        liveness: LivenessMonitor | None = None,
    ) -> None:
        self.detector = detector
        self.stride = stride
        self.progress = progress
        self.liveness = liveness
        self.frames = 0
        self._faces: dict[tuple[Path, int], Face | None] = {}
        self._live: dict[tuple[Path, int], bool | None] = {}
        self._tracks = 0

    def run(
        self,
        session: TrialSession,
        participant: str,
        path: Path,
        start: float,
        recognizer: Recognizer,
        label: str,
    ) -> None:
        for begin, end in trial_windows(start, clip_length(path), session.duration):
            source = f"{path.name} {begin:.2f}-{end:.2f} s"
            session.start(
                participant, now=begin, wall_clock=begin, source=source, duration=end - begin
            )
            self._tracks += 1  # one track per window: the liveness evidence starts afresh
            for index, t, frame in clip_frames(path, begin, end, self.stride):
                self.frames += 1
                key = (path, index)
                if key not in self._faces:
                    faces = self.detector.detect(frame, mode="largest")
                    self._faces[key] = face = faces[0] if faces else None
                    if self.liveness is not None and face is not None:
                        self._live[key] = self.liveness.update(self._tracks, frame, face).live
                face = self._faces[key]
                if face is None:
                    session.add_frame(t, None, recognizer=label)
                    continue
                crop = recognizer.align(frame, face)
                prediction = recognizer.predict([crop])[0]
                session.add_frame(
                    t, prediction, face_crop=crop, live=self._live.get(key), recognizer=label
                )
            if self.liveness is not None:
                self.liveness.retain([])
            result = session.finish()
            if self.progress:
                self.progress(
                    f"[{label}] {participant} {begin:.1f}-{end:.1f} s:"
                    f" {result.answer_label} -> {result.outcome}"
                )


def enroll_clips(
    clips: Sequence[Clip],
    detector: FaceDetector,
    seconds: float,
    config: EnrollConfig,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Enrollment], list[SkippedClip]]:
    """Each enrolled clip's capture, and the clips it gave no photo (reported, not run).
    Raises a :class:`UserError` saying why for each when no clip gave a photo."""
    enrollments: dict[str, Enrollment] = {}
    skipped: list[SkippedClip] = []
    for clip in clips:
        if not clip.enrolled:
            continue
        enrollment = enroll_from_video(clip.path, detector, seconds, config)
        if not enrollment.photos:
            skipped.append(SkippedClip(clip, seconds, enrollment))
            if progress:
                progress(skipped[-1].message)
            continue
        enrollments[clip.name] = enrollment
        if progress:
            progress(f"enrolled {clip.name}: {len(enrollment.photos)} photos")
    if skipped and not enrollments:
        raise UserError("nobody could be enrolled: " + "; ".join(item.message for item in skipped))
    return enrollments, skipped


def run_simulation(
    clips: Sequence[Clip],
    detector: FaceDetector,
    contenders: Sequence[Contender],
    *,
    enroll_seconds: float = 1.0,
    stride: int = 1,
    enroll_config: EnrollConfig | None = None,
    liveness: LivenessMonitor | None = None,
    leave_one_out: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Enroll, then run every clip's trials once per contender, into its session.

    An enrolled clip whose first ``enroll_seconds`` give the capture no photo is skipped
    (in :attr:`SimulationResult.skipped`, with the gate that refused most of its frames).
    With ``leave_one_out``, each enrolled clip's trial windows run once more as a stranger
    named "<name> (held out)", against a recognizer built without that person: more
    impostor trials than the visitors' clips alone give. A held-out recognizer that
    cannot be built (CLIP with one person left) is skipped and recorded. Every run after
    the first reuses the first one's faces and liveness verdicts (the same frames, the
    same tracks), so detection and liveness are paid once.
    """
    if stride < 1:
        raise UserError(f"--stride must be at least 1, got {stride}")
    tick = time.perf_counter()
    enrollments, skipped = enroll_clips(
        clips, detector, enroll_seconds, enroll_config or EnrollConfig(), progress
    )
    enroll_s = time.perf_counter() - tick
    gone = {item.clip.name for item in skipped}
    clips = [clip for clip in clips if clip.name not in gone]
    shots = {name: enrollment.photos for name, enrollment in enrollments.items()}

    runner = _ClipRunner(detector, stride, progress, liveness)
    for contender in contenders:
        tick, frames = time.perf_counter(), runner.frames
        build_s = contender.build_s
        session = contender.session
        built = contender.build(shots, held_out=None)
        if progress:
            progress(
                f"{contender.name}: {contender.label} built from the photos of {len(shots)}"
                f" people ({len(built.recognizer.people)} known)"
                f" in {contender.build_s - build_s:.1f} s"
            )
        roster = {p.name for p in session.participants}
        for clip in clips:
            if clip.name not in roster:
                session.add_participant(clip.name, clip.enrolled)
            start = enroll_seconds if clip.enrolled else 0.0
            runner.run(session, clip.name, clip.path, start, built.recognizer, contender.label)
        if leave_one_out:
            for clip in clips:
                others = {name: s for name, s in shots.items() if name != clip.name}
                if not clip.enrolled or not others:
                    continue
                try:
                    held = contender.build(others, held_out=clip.name)
                except CannotBuild as error:
                    contender.held_out_skipped.append({"held_out": clip.name, "reason": str(error)})
                    if progress:
                        progress(f"{contender.name}: no run without {clip.name}: {error}")
                    continue
                name = clip.name + HELD_OUT
                if name not in roster:
                    session.add_participant(name, enrolled=False)
                label = str(contender.builds[-1]["label"])
                runner.run(session, name, clip.path, enroll_seconds, held.recognizer, label)
        contender.frames += runner.frames - frames
        contender.trials_s += time.perf_counter() - tick - (contender.build_s - build_s)
    checks = 0 if liveness is None else liveness.checks
    return SimulationResult(enroll_s, enrollments, skipped, list(contenders), checks)
