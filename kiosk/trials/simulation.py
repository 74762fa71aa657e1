"""Offline deployment trials over video clips: the project's deployment benchmark.

One clip per participant. Enrolled participants are enrolled from the first
``enroll_seconds`` of their clip by the wizard's own capture logic
(:func:`enroll.session.capture_from_frames`: one face, score, size, brightness,
sharpness, pose and duplicate gates, from ``[enroll]``), keeping every photo it takes in
that time (at least one). Its photos are 224 px crops on the ArcFace template; the
gallery embeds them resized to 112 px (:func:`models.align.resize_crop`, exactly
as the people store's gallery is built). The rest of the clip (never overlapping the enrollment
frames) is cut into consecutive ``duration``-second windows, one trial each. A clip whose
rest is shorter than one window gives one shorter trial; a trailing part shorter than a
window is otherwise dropped. Visitors' (not enrolled) clips are cut the same way from
their start. Frames are taken every ``stride``-th frame, so the run is deterministic.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from enroll.config import EnrollConfig
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


# Builds a recognizer from each person's enrollment photos (224 px ArcFace-template crops).
RecognizerFactory = Callable[[dict[str, list[NDArray[np.uint8]]]], Recognizer]


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


def enroll_from_video(
    path: Path, detector: FaceDetector, seconds: float, config: EnrollConfig
) -> list[NDArray[np.uint8]]:
    """The wizard's capture over the first ``seconds`` of a clip: its photos, in order."""
    from enroll.session import capture_from_frames

    frames = (frame for _, _, frame in clip_frames(path, 0.0, seconds))
    capture = capture_from_frames(frames, detector.detect, config)
    return [photo.crop for photo in capture.photos]


def gallery_factory(model_path: Path, threshold: float) -> RecognizerFactory:
    """The MobileFaceNet embedding gallery, built from the enrollment shots."""

    def build(photos: dict[str, list[NDArray[np.uint8]]]) -> Recognizer:
        from models.align import resize_crop
        from models.embedder import ArcFaceEmbedder
        from models.gallery import EmbeddingGallery

        embedder = ArcFaceEmbedder(model_path)
        crops: dict[str, Sequence[NDArray[np.uint8]]] = {
            name: [resize_crop(crop) for crop in person] for name, person in photos.items()
        }
        return EmbeddingGallery.from_crops(embedder, crops, threshold=threshold)

    return build


def trial_windows(start: float, length: float, duration: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``duration`` seconds in [start, length)."""
    rest = length - start
    if rest <= 0:
        return []
    count = int(rest // duration)
    if count == 0:
        return [(start, length)]
    return [(start + i * duration, start + (i + 1) * duration) for i in range(count)]


@dataclass(frozen=True)
class SimulationTimings:
    enroll_s: float
    trials_s: float
    frames: int
    liveness_checks: int = 0


HELD_OUT = " (held out)"


class _ClipRunner:
    """Runs one clip's trial windows; remembers each frame's face so a rerun skips detection."""

    def __init__(
        self,
        detector: FaceDetector,
        session: TrialSession,
        stride: int,
        progress: Callable[[str], None] | None,
        liveness: LivenessMonitor | None = None,
    ) -> None:
        self.detector = detector
        self.session = session
        self.stride = stride
        self.progress = progress
        self.liveness = liveness
        self.frames = 0
        self._faces: dict[tuple[Path, int], Face | None] = {}
        self._live: dict[tuple[Path, int], bool | None] = {}
        self._tracks = 0

    def run(self, participant: str, path: Path, start: float, recognizer: Recognizer) -> None:
        session = self.session
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
                    session.add_frame(t, None)
                    continue
                crop = recognizer.align(frame, face)
                prediction = recognizer.predict([crop])[0]
                session.add_frame(t, prediction, face_crop=crop, live=self._live.get(key))
            if self.liveness is not None:
                self.liveness.retain([])
            result = session.finish()
            if self.progress:
                self.progress(
                    f"{participant} {begin:.1f}-{end:.1f} s:"
                    f" {result.answer_label} -> {result.outcome}"
                )


def run_simulation(
    clips: Sequence[Clip],
    detector: FaceDetector,
    recognizer_factory: RecognizerFactory,
    session: TrialSession,
    *,
    enroll_seconds: float = 1.0,
    stride: int = 1,
    enroll_config: EnrollConfig | None = None,
    liveness: LivenessMonitor | None = None,
    leave_one_out: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SimulationTimings:
    """Enroll, then run every clip's trials into ``session`` (which may be persisted).

    With ``leave_one_out``, each enrolled clip's trial windows run once more as a stranger
    named "<name> (held out)", against a recognizer enrolled without that person: more
    impostor trials than the visitors' clips alone give. Held-out reruns reuse the first
    run's faces and liveness verdicts (the same frames, the same tracks).
    """
    if stride < 1:
        raise UserError(f"--stride must be at least 1, got {stride}")
    tick = time.perf_counter()
    enroll_config = enroll_config or EnrollConfig()
    shots: dict[str, list[NDArray[np.uint8]]] = {}
    for clip in clips:
        if clip.enrolled:
            shots[clip.name] = enroll_from_video(clip.path, detector, enroll_seconds, enroll_config)
            if not shots[clip.name]:
                raise UserError(
                    f"no frame of the first {enroll_seconds:g} s of {clip.path} passed the"
                    " enrollment capture's gates (one face, score, size, brightness,"
                    " sharpness, pose)"
                )
            if progress:
                progress(f"enrolled {clip.name}: {len(shots[clip.name])} photos")
    recognizer = recognizer_factory(shots)
    enroll_s = time.perf_counter() - tick

    tick = time.perf_counter()
    runner = _ClipRunner(detector, session, stride, progress, liveness)
    roster = {p.name for p in session.participants}
    for clip in clips:
        if clip.name not in roster:
            session.add_participant(clip.name, clip.enrolled)
        runner.run(clip.name, clip.path, enroll_seconds if clip.enrolled else 0.0, recognizer)
    if leave_one_out:
        for clip in clips:
            others = {name: s for name, s in shots.items() if name != clip.name}
            if not clip.enrolled or not others:
                continue
            name = clip.name + HELD_OUT
            if name not in roster:
                session.add_participant(name, enrolled=False)
            runner.run(name, clip.path, enroll_seconds, recognizer_factory(others))
    checks = 0 if liveness is None else liveness.checks
    return SimulationTimings(enroll_s, time.perf_counter() - tick, runner.frames, checks)
