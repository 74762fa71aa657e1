"""Guided capture on real video frames: pose targets, quality gates, camera loss."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from enroll.config import EnrollConfig
from enroll.session import (
    TEMPLATE_NOSE_HEIGHT,
    CaptureSession,
    capture_from_frames,
    head_pose,
    pitch_degrees,
)
from enroll.store import Consent, PeopleStore, utc_now
from models.align import ARCFACE_TEMPLATE


@pytest.fixture(scope="module")
def detector320(model_dir: Path):  # type: ignore[no-untyped-def]
    from models.detector import FaceDetector

    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)


def frames(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def test_head_pose_from_keypoints() -> None:
    front = head_pose(ARCFACE_TEMPLATE)
    assert abs(front.yaw) < 1.0
    assert front.nose_height == pytest.approx(TEMPLATE_NOSE_HEIGHT, abs=0.01)
    turned = ARCFACE_TEMPLATE.copy()
    turned[2, 0] += 8.0  # nose towards image right: the person's left
    assert head_pose(turned).yaw > 10.0
    raised = ARCFACE_TEMPLATE.copy()
    raised[2, 1] -= 5.0  # nose nearer the eyes: head tilted up
    assert pitch_degrees(head_pose(raised).nose_height, TEMPLATE_NOSE_HEIGHT) > 5.0


def _rolled(kps: np.ndarray, degrees: float) -> np.ndarray:
    """``kps`` turned in the image plane by ``degrees`` about their centre (a head tilted
    sideways: roll)."""
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = kps.mean(axis=0)
    return np.asarray((kps - centre) @ rotation.T + centre)


@pytest.mark.parametrize("roll", [-15.0, -8.0, 8.0, 15.0])
def test_a_tilted_head_is_not_read_as_turned(roll: float) -> None:
    """Roll leaves yaw and nose height alone (measured along the image's x axis, a 15°
    tilt read as a yaw of about 15° and a frontal face never passed the front pose)."""
    front = head_pose(ARCFACE_TEMPLATE)
    tilted = head_pose(_rolled(ARCFACE_TEMPLATE, roll))
    assert tilted.yaw == pytest.approx(front.yaw, abs=0.5)
    assert tilted.nose_height == pytest.approx(front.nose_height, abs=0.01)
    turned = ARCFACE_TEMPLATE.copy()
    turned[2, 0] += 8.0
    assert head_pose(_rolled(turned, roll)).yaw == pytest.approx(head_pose(turned).yaw, abs=0.5)
    assert CaptureSession(EnrollConfig()).classify(tilted.yaw, None) == "front"


def test_the_front_pose_and_its_bands_come_from_the_config() -> None:
    session = CaptureSession(EnrollConfig(front_yaw_deg=3.0))
    assert session.classify(4.0, None) is None and session.classify(2.0, None) == "front"
    assert CaptureSession(EnrollConfig()).classify(7.0, None) == "front"  # 8° by default
    assert "|yaw| < 3°" in session.pose_needs("front") and "front_yaw_deg" in session.pose_needs(
        "front"
    )
    with pytest.raises(ValueError, match="front_yaw_deg must not exceed yaw_target_deg"):
        EnrollConfig(front_yaw_deg=13.0)


def test_guided_capture_fills_every_pose_on_a_real_video(
    shared: Callable[..., Path], detector320
) -> None:  # type: ignore[no-untyped-def]
    session = CaptureSession(EnrollConfig())
    events = []
    for frame in frames(shared("videos", "solo_07.mp4")):
        events.append(session.offer(frame, detector320.detect(frame)))
        if session.done:
            break
    assert session.done and len(session.photos) == 30
    assert session.progress() == {p: (6, 6) for p in ("front", "left", "right", "up", "down")}
    captured = [e for e in events if e.status == "captured"]
    assert len(captured) == 30
    assert captured[0].photo is not None and captured[0].photo.pose == "front"  # front first
    reference = session.frontal_nose_height
    assert reference is not None
    for photo in session.photos:
        assert photo.crop.shape == (224, 224, 3)
        if photo.pose != "front":  # each photo shows the pose it was filed under
            pitch = pitch_degrees(photo.nose_height, reference)
            assert session.classify(photo.yaw, pitch) in (photo.pose, None)
        if photo.pose == "left":
            assert photo.yaw >= 12.0
        if photo.pose == "right":
            assert photo.yaw <= -12.0
    # guidance names the pose still wanted while the head is elsewhere
    waiting = [e for e in events if e.gate == "pose"]
    assert waiting and all(e.target is not None and e.message for e in waiting)
    assert any("turn a little to your" in e.message for e in waiting)
    assert session.offer(frame, []).status == "done"


def test_quality_gates_reject_bad_frames(shared: Callable[..., Path], detector320) -> None:  # type: ignore[no-untyped-def]
    frame = next(itertools.islice(frames(shared("videos", "solo_05.mp4")), 10, None))
    session = CaptureSession(EnrollConfig())

    def offer(image: np.ndarray) -> str | None:
        image = np.ascontiguousarray(image)
        return session.offer(image, detector320.detect(image)).gate

    assert offer(np.zeros_like(frame)) == "one_face"  # nobody there
    assert offer(np.hstack([frame, frame])) == "one_face"  # two people
    assert offer(cv2.resize(frame, None, fx=0.25, fy=0.25)) == "size"
    assert offer((frame * 0.15).astype(np.uint8)) == "brightness"
    assert offer(cv2.GaussianBlur(frame, (0, 0), 4)) == "sharpness"
    assert session.photos == []
    # Each held frame says what was measured against what is needed, and the key.
    assert session.last_detail["size"].endswith("needs 80 ([enroll] min_face_size)")
    assert session.last_detail["sharpness"].startswith("sharpness ")
    assert "([enroll] min_brightness, max_brightness)" in session.last_detail["brightness"]
    assert session.last_detail["one_face"] == "2 faces in view"
    assert sum(session.blocked.values()) == 5 and session.blocked["one_face"] == 2
    assert session.blocking().startswith("2 of 5 frames held by the one face gate (last: ")
    event = session.offer(frame, detector320.detect(frame))
    assert event.status == "captured" and event.photo is not None
    assert offer(frame) == "duplicate"  # the same view again
    assert len(session.photos) == 1


def test_camera_loss_keeps_photos_and_resumes(shared: Callable[..., Path], detector320) -> None:  # type: ignore[no-untyped-def]
    video = shared("videos", "solo_02.mp4")
    config = EnrollConfig(photos=10, poses=("front", "left", "right"))
    session = CaptureSession(config)
    stream = itertools.chain(
        itertools.islice(frames(video), 120),
        [None, None],
        itertools.islice(frames(video), 120, None),
    )
    before_loss = 0
    for frame in stream:
        event = session.offer(frame, [] if frame is None else detector320.detect(frame))
        if frame is None:
            assert event.status == "camera_lost" and "kept" in event.message
            before_loss = len(session.photos)
        if session.done:
            break
    assert 0 < before_loss < len(session.photos)
    assert session.camera_losses == 2 and session.done


def test_capture_from_frames_and_review_removal(  # type: ignore[no-untyped-def]
    tmp_path: Path, shared: Callable[..., Path], detector320
) -> None:
    config = EnrollConfig(photos=10, poses=("front", "up", "down"))
    video = shared("videos", "solo_03.mp4")
    session = capture_from_frames(frames(video), detector320.detect, config, keep_originals=True)
    assert session.done and len(session.photos) == 10
    with PeopleStore(tmp_path) as store:  # a session's photos go straight into the store
        store.add_person("From video", session.photos, Consent("v", utc_now()))
        assert len(store.photos("From video", kind="original")) == 10
        assert [r.pose for r in store.photos("From video")] == [p.pose for p in session.photos]
    removed = session.photos[0]
    session.remove(0)  # the operator rejects a photo at review: its pose wants one more
    assert len(session.photos) == 9 and session.target == removed.pose
    session.skip_pose(removed.pose)  # the operator gives up on that pose
    assert session.done


def test_inconsistent_capture_settings_are_config_errors(tmp_path: Path) -> None:
    from kiosk.config import load_config
    from models.errors import UserError

    path = tmp_path / "config.toml"
    for body in ("photos = 10\nmin_photos = 12", 'poses = ["front", "front"]'):
        path.write_text(f"[enroll]\n{body}\n", encoding="utf-8")
        with pytest.raises(UserError, match="enroll"):
            load_config(path)
    path.write_text('[enroll]\nphotos = 10\nposes = ["front", "left"]\n', encoding="utf-8")
    assert CaptureSession(load_config(path).enroll).wanted == {"front": 5, "left": 5}
