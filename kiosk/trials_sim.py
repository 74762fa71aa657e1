"""Offline deployment trials over video clips: the project's deployment benchmark.

One clip per participant. Enrolled participants are enrolled from the first
``enroll_seconds`` of their clip; the rest of the clip (never overlapping the enrollment
frames) is cut into consecutive ``duration``-second windows, one trial each. A clip whose
rest is shorter than one window gives one shorter trial; a trailing part shorter than a
window is otherwise dropped. Visitors' (not enrolled) clips are cut the same way from
their start. Frames are taken every ``stride``-th frame, so the run is deterministic.

The trials run through :class:`~kiosk.trials.TrialSession`, the same logic the live
console uses, with the video's own time as the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from kiosk.errors import UserError
from kiosk.trials import TrialSession
from models.align import align_arcface
from models.detector import Face, FaceDetector
from models.recognizer import Recognizer

DEFAULT_ENROLLED = ("solo_01", "solo_02", "solo_03", "solo_04", "solo_05", "solo_06")
DEFAULT_VISITORS = ("solo_07", "solo_08", "hamilton")


@dataclass(frozen=True)
class Clip:
    name: str  # the participant's name
    path: Path
    enrolled: bool


@dataclass(frozen=True)
class EnrollmentShot:
    """A frame that passed the quality gates, and the face in it."""

    frame_index: int
    image: NDArray[np.uint8]
    face: Face


@dataclass(frozen=True)
class QualityGates:
    """Stand-in for enroll/session.py's gates until the wizard's capture logic is shared."""

    min_face: float = 80.0  # shorter side of the face box, pixels
    min_sharpness: float = 40.0  # variance of the Laplacian of the aligned 112 px face
    max_similarity: float = 0.97  # correlation of two aligned 32 px faces that makes a duplicate
    max_shots: int = 10


RecognizerFactory = Callable[[dict[str, list[EnrollmentShot]]], Recognizer]


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


def _signature(aligned: NDArray[np.uint8]) -> NDArray[np.float32]:
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-6)


def enroll_from_video(
    path: Path,
    detector: FaceDetector,
    seconds: float,
    gates: QualityGates = QualityGates(),
) -> list[EnrollmentShot]:
    """Enrollment shots from the first ``seconds`` of a clip, in frame order.

    Gates: exactly one face, at least ``min_face`` pixels, sharp enough, and not a
    near-duplicate of a shot already kept.
    """
    shots: list[EnrollmentShot] = []
    signatures: list[NDArray[np.float32]] = []
    for index, _, frame in clip_frames(path, 0.0, seconds):
        faces = detector.detect(frame)
        if len(faces) != 1 or faces[0].size < gates.min_face:
            continue
        aligned = align_arcface(frame, faces[0].kps)
        grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
        if float(cv2.Laplacian(grey, cv2.CV_64F).var()) < gates.min_sharpness:
            continue
        signature = _signature(aligned)
        if any(float(signature @ s) > gates.max_similarity for s in signatures):
            continue
        shots.append(EnrollmentShot(index, frame, faces[0]))
        signatures.append(signature)
        if len(shots) >= gates.max_shots:
            break
    return shots


def gallery_factory(model_path: Path, threshold: float) -> RecognizerFactory:
    """The MobileFaceNet embedding gallery, built from the enrollment shots."""

    def build(shots: dict[str, list[EnrollmentShot]]) -> Recognizer:
        from models.embedder import ArcFaceEmbedder
        from models.gallery import EmbeddingGallery

        embedder = ArcFaceEmbedder(model_path)
        crops: dict[str, Sequence[NDArray[np.uint8]]] = {
            name: [embedder.align(shot.image, shot.face) for shot in person_shots]
            for name, person_shots in shots.items()
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


HELD_OUT = " (held out)"


class _ClipRunner:
    """Runs one clip's trial windows; remembers each frame's face so a rerun skips detection."""

    def __init__(
        self,
        detector: FaceDetector,
        session: TrialSession,
        stride: int,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.detector = detector
        self.session = session
        self.stride = stride
        self.progress = progress
        self.frames = 0
        self._faces: dict[tuple[Path, int], Face | None] = {}

    def run(self, participant: str, path: Path, start: float, recognizer: Recognizer) -> None:
        session = self.session
        for begin, end in trial_windows(start, clip_length(path), session.duration):
            source = f"{path.name} {begin:.2f}-{end:.2f} s"
            session.start(
                participant, now=begin, wall_clock=begin, source=source, duration=end - begin
            )
            for index, t, frame in clip_frames(path, begin, end, self.stride):
                self.frames += 1
                key = (path, index)
                if key not in self._faces:
                    faces = self.detector.detect(frame, mode="largest")
                    self._faces[key] = faces[0] if faces else None
                face = self._faces[key]
                if face is None:
                    session.add_frame(t, None)
                    continue
                crop = recognizer.align(frame, face)
                session.add_frame(t, recognizer.predict([crop])[0], face_crop=crop)
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
    gates: QualityGates = QualityGates(),
    leave_one_out: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SimulationTimings:
    """Enroll, then run every clip's trials into ``session`` (which may be persisted).

    With ``leave_one_out``, each enrolled clip's trial windows run once more as a stranger
    named "<name> (held out)", against a recognizer enrolled without that person: more
    impostor trials than the visitors' clips alone give.
    """
    if stride < 1:
        raise UserError(f"--stride must be at least 1, got {stride}")
    tick = time.perf_counter()
    shots: dict[str, list[EnrollmentShot]] = {}
    for clip in clips:
        if clip.enrolled:
            shots[clip.name] = enroll_from_video(clip.path, detector, enroll_seconds, gates)
            if not shots[clip.name]:
                raise UserError(
                    f"no frame of the first {enroll_seconds:g} s of {clip.path} passed the"
                    " enrollment quality gates (one face, size, sharpness)"
                )
            if progress:
                progress(f"enrolled {clip.name}: {len(shots[clip.name])} shots")
    recognizer = recognizer_factory(shots)
    enroll_s = time.perf_counter() - tick

    tick = time.perf_counter()
    runner = _ClipRunner(detector, session, stride, progress)
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
    return SimulationTimings(enroll_s, time.perf_counter() - tick, runner.frames)
