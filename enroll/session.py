"""Guided capture of one volunteer's photos from any stream of frames.

Feed every frame with its detected faces to :meth:`CaptureSession.offer`; it answers
with a :class:`CaptureEvent` saying what to tell the volunteer and whether a photo was
taken. A photo is taken when the head pose meets a pose that still needs photos and
every quality gate passes. The session keeps no reference to a camera: when frames stop
(``offer(None, [])``), the photos already taken stay and capture resumes with the next
frame, from the same camera or another one.

The head pose comes from the 5 keypoints alone (no 3D model): yaw from where the nose
sits between the eyes, pitch from where it sits between the eyes and the mouth,
measured relative to the volunteer's own frontal photos. Both are approximate angles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from enroll.config import EnrollConfig
from models.align import CLIP_SIZE, align_face
from models.detector import Face

Pose = Literal["front", "left", "right", "up", "down"]
Status = Literal["captured", "waiting", "rejected", "camera_lost", "done"]

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


@dataclass(frozen=True)
class HeadPose:
    """``yaw`` > 0: turned to the person's left (image right on an unmirrored camera);
    ``nose_height``: nose between eye line (0) and mouth line (1), falls as the head tilts up.
    """

    yaw: float
    nose_height: float


def head_pose(kps: NDArray[np.floating]) -> HeadPose:
    left_eye, right_eye, nose, left_mouth, right_mouth = np.asarray(kps, dtype=np.float64)
    eyes = (left_eye + right_eye) / 2.0
    mouth = (left_mouth + right_mouth) / 2.0
    eye_distance = max(float(np.linalg.norm(right_eye - left_eye)), 1e-6)
    offset = float(nose[0] - eyes[0]) / eye_distance
    yaw = math.degrees(math.atan(offset / NOSE_DEPTH))
    nose_height = float(nose[1] - eyes[1]) / max(float(mouth[1] - eyes[1]), 1e-6)
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

    def classify(self, yaw: float, pitch: float | None) -> Pose | None:
        """The pose a head at (yaw, pitch) shows, or None between poses."""
        yaw_t, pitch_t = self.config.yaw_target_deg, self.config.pitch_target_deg
        if pitch is None:  # no frontal reference yet: only the front can be recognised
            return "front" if abs(yaw) < yaw_t / 2 else None
        if abs(yaw) >= yaw_t and abs(yaw) / yaw_t >= abs(pitch) / pitch_t:
            return "left" if yaw > 0 else "right"
        if abs(pitch) >= pitch_t:
            return "up" if pitch > 0 else "down"
        if abs(yaw) < yaw_t / 2 and abs(pitch) < pitch_t / 2:
            return "front"
        return None

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

    def offer(self, frame: NDArray[np.uint8] | None, faces: Sequence[Face]) -> CaptureEvent:
        """Consider one frame and its detected faces; ``frame=None`` means the camera is lost."""
        cfg = self.config
        if frame is None:
            self.camera_losses += 1
            return self._event(
                "camera_lost",
                f"camera lost: reconnecting; the {len(self.photos)} photos taken are kept",
            )
        self.frames_seen += 1
        target = self.target
        if target is None:
            return self._event("done", "all photos taken, thank you")
        if not faces:
            return self._event("waiting", "step in front of the camera", gate="one_face")
        if len(faces) > 1:
            return self._event(
                "rejected", "only one person in front of the camera, please", gate="one_face"
            )
        face = faces[0]
        raw = head_pose(face.kps)
        reference = self.frontal_nose_height
        pitch = None if reference is None else pitch_degrees(raw.nose_height, reference)
        seen = {"face": face, "yaw": raw.yaw, "pitch": pitch}
        if face.score < cfg.min_score:
            return self._event(
                "rejected",
                "face the camera and uncover your face",
                gate="score",
                **seen,
            )
        if face.size < cfg.min_face_size:
            return self._event("rejected", "come a little closer", gate="size", **seen)
        crop = align_face(frame, face.kps, CLIP_SIZE)
        small = cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)
        gray = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        brightness = float(gray[20:100, 20:92].mean())  # the face, not the border
        if brightness < cfg.min_brightness:
            return self._event("rejected", "too dark: face the light", gate="brightness", **seen)
        if brightness > cfg.max_brightness:
            return self._event(
                "rejected", "too bright: move out of the glare", gate="brightness", **seen
            )
        sharp = sharpness(gray)
        if sharp < cfg.min_sharpness:
            return self._event("rejected", "hold still for a moment", gate="sharpness", **seen)
        pose = self.classify(raw.yaw, pitch)
        if pose is None or pose not in self._open_poses():
            return self._event(
                "waiting", self._pose_hint(target, raw.yaw, pitch), gate="pose", **seen
            )
        signature = _signature(gray)
        if self._signatures and max(float(s @ signature) for s in self._signatures) >= (
            cfg.duplicate_similarity
        ):
            return self._event("rejected", "move your head a little", gate="duplicate", **seen)
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
