"""Guided capture of one volunteer's photos from any stream of frames.

Feed every frame with its detected faces to :meth:`CaptureSession.offer`; it answers
with a :class:`CaptureEvent` saying what to tell the volunteer and whether a photo was
taken. A photo is taken when the head pose meets a pose that still needs photos and
every quality gate passes. The session keeps no reference to a camera: when frames stop
(``offer(None, [])``), the photos already taken stay and capture resumes with the next
frame, from the same camera or another one.

The head pose comes from the 5 keypoints alone (no 3D model), measured in the face's own
frame (along and across the eye line, so a head tilted sideways is not read as turned):
yaw from where the nose sits between the eyes, pitch from where it sits between the
eyes and the mouth, relative to the volunteer's own frontal photos. Both are approximate
angles; tests/enroll/test_pose_faces.py measures them on the frontal faces of ../shared.

Each frame a gate holds back is counted (``blocked``), with what it measured against
what it needs and the [enroll] key that sets it (``CaptureEvent.detail``): the wizard
shows it to the operator, and ``blocking()`` says which gate held capture most.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from enroll.config import EnrollConfig
from models.align import CLIP_SIZE, align_face
from models.detector import Face
from models.words import counted

Pose = Literal["front", "left", "right", "up", "down"]
Status = Literal["captured", "waiting", "rejected", "camera_lost", "ended", "done"]

GUIDANCE: dict[str, str] = {
    "front": "look straight at the camera",
    "left": "turn a little to your left",
    "right": "turn a little to your right",
    "up": "tilt your head a little up",
    "down": "tilt your head a little down",
}
# Where the nose sits between the eye line and the mouth line on the ArcFace template.
TEMPLATE_NOSE_HEIGHT = (71.7366 - 51.6) / (92.285 - 51.6)
# The nose tip stands about half an eye distance in front of the eyes, so an offset of
# r eye distances means a turn of about atan(2 r).
NOSE_DEPTH = 0.5
DUPLICATE_SIZE = 24
# The gates, as the operator reads them (CaptureEvent.gate, CaptureSession.blocked).
GATE_NAMES: dict[str, str] = {
    "one_face": "one face",
    "score": "detection score",
    "size": "face size",
    "brightness": "brightness",
    "sharpness": "sharpness",
    "pose": "head pose",
    "duplicate": "duplicate",
}


@dataclass(frozen=True)
class HeadPose:
    """``yaw`` > 0: turned to the person's left (image right on an unmirrored camera);
    ``nose_height``: nose between eye line (0) and mouth line (1), falls as the head tilts up.
    """

    yaw: float
    nose_height: float


def head_pose(kps: NDArray[np.floating]) -> HeadPose:
    """Yaw and nose height measured in the face's own frame: along and across its eye
    line, so a head tilted sideways (roll) reads as the pose it has. Measured along the
    image's x axis instead, a roll of 10° moved the nose a tenth of an eye distance
    sideways and read as a yaw of about 10°: frontal volunteers who hold their head a
    little tilted never passed the front pose."""
    left_eye, right_eye, nose, left_mouth, right_mouth = np.asarray(kps, dtype=np.float64)
    eyes = (left_eye + right_eye) / 2.0
    mouth = (left_mouth + right_mouth) / 2.0
    eye_line = right_eye - left_eye
    eye_distance = max(float(np.linalg.norm(eye_line)), 1e-6)
    along = eye_line / eye_distance  # the eye line, left eye to right eye (image)
    down = np.array([-along[1], along[0]])  # across it, towards the mouth
    offset = float((nose - eyes) @ along) / eye_distance
    yaw = math.degrees(math.atan(offset / NOSE_DEPTH))
    nose_height = float((nose - eyes) @ down) / max(float((mouth - eyes) @ down), 1e-6)
    return HeadPose(yaw=yaw, nose_height=nose_height)


def pitch_degrees(nose_height: float, frontal_nose_height: float) -> float:
    """Approximate pitch, > 0 when the head tilts up."""
    return math.degrees(math.atan((frontal_nose_height - nose_height) / NOSE_DEPTH))


def sharpness(gray: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian: low when the image is blurred."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _signature(gray: NDArray[np.uint8]) -> NDArray[np.float32]:
    small = cv2.resize(gray, (DUPLICATE_SIZE, DUPLICATE_SIZE), interpolation=cv2.INTER_AREA)
    vector = small.astype(np.float32).ravel()
    vector -= vector.mean()
    return vector / max(float(np.linalg.norm(vector)), 1e-6)


@dataclass(frozen=True)
class CapturedPhoto:
    crop: NDArray[np.uint8]  # BGR, 224x224, aligned to the ArcFace template
    pose: Pose
    yaw: float
    pitch: float  # relative to the frontal reference; 0 until one exists
    nose_height: float
    sharpness: float
    brightness: float
    score: float
    original: NDArray[np.uint8] | None = None


@dataclass(frozen=True)
class CaptureEvent:
    status: Status
    message: str  # what to tell the volunteer
    target: Pose | None  # the pose being asked for
    progress: dict[str, tuple[int, int]]  # pose -> (taken, wanted)
    gate: str | None = None  # the quality gate that failed
    detail: str = ""  # what it measured against what it needs, and the [enroll] key
    face: Face | None = None
    yaw: float | None = None
    pitch: float | None = None
    photo: CapturedPhoto | None = None


@dataclass
class CaptureSession:
    """One volunteer's capture; ``config`` sets the photo count, poses and quality gates."""

    config: EnrollConfig = field(default_factory=EnrollConfig)
    keep_originals: bool = False
    photos: list[CapturedPhoto] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    frames_seen: int = 0
    camera_losses: int = 0
    blocked: Counter[str] = field(default_factory=Counter)  # gate -> frames it held
    last_detail: dict[str, str] = field(default_factory=dict)  # gate -> its last measurement

    def __post_init__(self) -> None:
        poses = self.config.poses
        base, extra = divmod(self.config.photos, len(poses))
        self.wanted: dict[str, int] = {
            p: base + (1 if i < extra else 0) for i, p in enumerate(poses)
        }
        self._signatures: list[NDArray[np.float32]] = []

    # -- state -------------------------------------------------------------------------

    def taken(self, pose: str) -> int:
        return sum(1 for photo in self.photos if photo.pose == pose)

    def progress(self) -> dict[str, tuple[int, int]]:
        return {pose: (self.taken(pose), wanted) for pose, wanted in self.wanted.items()}

    def _open_poses(self) -> list[str]:
        return [
            pose
            for pose, wanted in self.wanted.items()
            if pose not in self.skipped and self.taken(pose) < wanted
        ]

    @property
    def target(self) -> Pose | None:
        open_poses = self._open_poses()
        return open_poses[0] if open_poses else None  # type: ignore[return-value]

    @property
    def done(self) -> bool:
        return self.target is None

    @property
    def frontal_nose_height(self) -> float | None:
        """The volunteer's own frontal reference, once a frontal photo exists."""
        front = [p.nose_height for p in self.photos if p.pose == "front"]
        if front:
            return float(np.median(front))
        if "front" not in self.wanted or "front" in self.skipped:
            return TEMPLATE_NOSE_HEIGHT  # no frontal photo will come: the template's
        return None

    def skip_pose(self, pose: str) -> None:
        """Give up on a pose the volunteer cannot make (the operator decides)."""
        if pose not in self.wanted:
            raise ValueError(f"unknown pose {pose!r}; poses: {', '.join(self.wanted)}")
        self.skipped.add(pose)

    def remove(self, index: int) -> None:
        """Drop a photo (rejected at review); its pose wants another one."""
        del self.photos[index]
        del self._signatures[index]

    # -- capture -----------------------------------------------------------------------

    def _event(self, status: Status, message: str, **kwargs: object) -> CaptureEvent:
        return CaptureEvent(status, message, self.target, self.progress(), **kwargs)  # type: ignore[arg-type]

    def _held(
        self, status: Status, message: str, gate: str, detail: str, **seen: object
    ) -> CaptureEvent:
        """A frame a gate held back: counted, and its measurement kept for the operator."""
        self.blocked[gate] += 1
        self.last_detail[gate] = detail
        return self._event(status, message, gate=gate, detail=detail, **seen)

    def classify(self, yaw: float, pitch: float | None) -> Pose | None:
        """The pose a head at (yaw, pitch) shows, or None between poses."""
        cfg = self.config
        yaw_t, pitch_t = cfg.yaw_target_deg, cfg.pitch_target_deg
        if pitch is None:  # no frontal reference yet: only the front can be recognised
            return "front" if abs(yaw) < cfg.front_yaw_deg else None
        if abs(yaw) >= yaw_t and abs(yaw) / yaw_t >= abs(pitch) / pitch_t:
            return "left" if yaw > 0 else "right"
        if abs(pitch) >= pitch_t:
            return "up" if pitch > 0 else "down"
        if abs(yaw) < cfg.front_yaw_deg and abs(pitch) < cfg.front_pitch_deg:
            return "front"
        return None

    def pose_needs(self, target: Pose) -> str:
        """What the pose ``target`` asks of the head, with the [enroll] keys that set it."""
        cfg = self.config
        if target == "front":
            return (
                f"the front pose needs |yaw| < {cfg.front_yaw_deg:g}° and |pitch| < "
                f"{cfg.front_pitch_deg:g}° ([enroll] front_yaw_deg, front_pitch_deg)"
            )
        if target in ("left", "right"):
            yaw = cfg.yaw_target_deg
            bound = f"≥ +{yaw:g}" if target == "left" else f"≤ -{yaw:g}"
            return f"the {target} pose needs yaw {bound}° ([enroll] yaw_target_deg)"
        pitch = cfg.pitch_target_deg
        bound = f"≥ +{pitch:g}" if target == "up" else f"≤ -{pitch:g}"
        return f"the {target} pose needs pitch {bound}° ([enroll] pitch_target_deg)"

    def blocking(self) -> str:
        """Why capture is not done, in words: the gate that held most frames, with its last
        measurement ("" when nothing was held)."""
        if not self.blocked:
            return ""
        gate, frames = self.blocked.most_common(1)[0]
        held = sum(self.blocked.values())
        return (
            f"{frames} of {held} frames held by the {GATE_NAMES.get(gate, gate)} gate "
            f"(last: {self.last_detail.get(gate, '')})"
        )

    def _pose_hint(self, target: Pose, yaw: float, pitch: float | None) -> str:
        if target == "front":
            return GUIDANCE["front"]
        if target in ("left", "right"):
            wanted = 1.0 if target == "left" else -1.0
            turned = yaw * wanted
            if turned > 0:
                return f"{GUIDANCE[target]}, a bit more"
            return GUIDANCE[target]
        if pitch is not None and (pitch > 0) == (target == "up") and pitch != 0:
            return f"{GUIDANCE[target]}, a bit more"
        return GUIDANCE[target]

    def ended(self, why: str) -> CaptureEvent:
        """No frame will come again (a video file has ended): ``why`` says which source,
        the event what the photos taken allow (a camera lost is ``offer(None, [])``)."""
        taken, needed = len(self.photos), self.config.min_photos
        if self.done or taken >= needed:
            then = "press Next to review them"
        else:
            then = f"{needed - taken} more are needed: start again on a longer video or a camera"
            if self.blocked:
                then += f"; {self.blocking()}"
        return self._event("ended", f"{why}; {self._taken_text()} kept, {then}")

    def _taken_text(self) -> str:
        """ "the 8 photos taken are", "the 1 photo taken is", "no photo taken is" """
        taken = len(self.photos)
        if taken == 0:
            return "no photo taken is"
        return f"the {counted(taken, 'photo')} taken {'is' if taken == 1 else 'are'}"

    def offer(self, frame: NDArray[np.uint8] | None, faces: Sequence[Face]) -> CaptureEvent:
        """Consider one frame and its detected faces; ``frame=None`` means the camera is lost."""
        cfg = self.config
        if frame is None:
            self.camera_losses += 1
            return self._event(
                "camera_lost",
                f"camera lost: reconnecting; {self._taken_text()} kept",
            )
        self.frames_seen += 1
        target = self.target
        if target is None:
            return self._event("done", "all photos taken, thank you")
        if not faces:
            return self._held(
                "waiting", "step in front of the camera", "one_face", "no face in view"
            )
        if len(faces) > 1:
            return self._held(
                "rejected",
                "only one person in front of the camera, please",
                "one_face",
                f"{len(faces)} faces in view",
            )
        face = faces[0]
        raw = head_pose(face.kps)
        reference = self.frontal_nose_height
        pitch = None if reference is None else pitch_degrees(raw.nose_height, reference)
        seen = {"face": face, "yaw": raw.yaw, "pitch": pitch}
        if face.score < cfg.min_score:
            return self._held(
                "rejected",
                "face the camera and uncover your face",
                "score",
                f"detection score {face.score:.2f}, needs {cfg.min_score:g} ([enroll] min_score)",
                **seen,
            )
        if face.size < cfg.min_face_size:
            return self._held(
                "rejected",
                "come a little closer",
                "size",
                f"face {face.size:.0f} px, needs {cfg.min_face_size:g} ([enroll] min_face_size)",
                **seen,
            )
        crop = align_face(frame, face.kps, CLIP_SIZE)
        small = cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)
        gray = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        brightness = float(gray[20:100, 20:92].mean())  # the face, not the border
        light = (
            f"brightness {brightness:.0f}, needs {cfg.min_brightness:g} to "
            f"{cfg.max_brightness:g} ([enroll] min_brightness, max_brightness)"
        )
        if brightness < cfg.min_brightness:
            return self._held("rejected", "too dark: face the light", "brightness", light, **seen)
        if brightness > cfg.max_brightness:
            return self._held(
                "rejected", "too bright: move out of the glare", "brightness", light, **seen
            )
        sharp = sharpness(gray)
        if sharp < cfg.min_sharpness:
            return self._held(
                "rejected",
                "hold still for a moment",
                "sharpness",
                f"sharpness {sharp:.0f}, needs {cfg.min_sharpness:g} ([enroll] min_sharpness)",
                **seen,
            )
        pose = self.classify(raw.yaw, pitch)
        if pose is None or pose not in self._open_poses():
            measured = f"yaw {raw.yaw:+.0f}°" + ("" if pitch is None else f", pitch {pitch:+.0f}°")
            return self._held(
                "waiting",
                self._pose_hint(target, raw.yaw, pitch),
                "pose",
                f"{measured}; {self.pose_needs(target)}",
                **seen,
            )
        signature = _signature(gray)
        similar = max((float(s @ signature) for s in self._signatures), default=0.0)
        if similar >= cfg.duplicate_similarity:
            return self._held(
                "rejected",
                "move your head a little",
                "duplicate",
                f"{similar:.3f} alike a photo taken, needs under {cfg.duplicate_similarity:g} "
                "([enroll] duplicate_similarity)",
                **seen,
            )
        photo = CapturedPhoto(
            crop=np.asarray(crop, dtype=np.uint8),
            pose=pose,
            yaw=raw.yaw,
            pitch=float(pitch or 0.0),
            nose_height=raw.nose_height,
            sharpness=sharp,
            brightness=brightness,
            score=face.score,
            original=frame.copy() if self.keep_originals else None,
        )
        self.photos.append(photo)
        self._signatures.append(signature)
        next_target = self.target
        message = (
            "all photos taken, thank you"
            if next_target is None
            else f"got it; now {GUIDANCE[next_target]}"
        )
        return self._event("captured", message, photo=photo, **seen)


def capture_from_frames(
    frames: Iterable[NDArray[np.uint8] | None],
    detect: Callable[[NDArray[np.uint8]], Sequence[Face]],
    config: EnrollConfig,
    keep_originals: bool = False,
    on_event: Callable[[CaptureEvent], None] | None = None,
) -> CaptureSession:
    """Run a whole capture over a stream of frames (a video, a camera), stopping when done.

    The same capture and quality logic as the wizard's, for enrolling from recordings;
    ``on_event`` sees every frame's event (its ``gate`` says which gate refused it).
    """
    session = CaptureSession(config, keep_originals=keep_originals)
    for frame in frames:
        event = session.offer(frame, [] if frame is None else detect(frame))
        if on_event is not None:
            on_event(event)
        if session.done:
            break
    return session
