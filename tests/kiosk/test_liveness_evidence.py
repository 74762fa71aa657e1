"""The per-track liveness accumulator and the head-turn cue: pure logic, no models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from kiosk.config import KioskConfig, LivenessConfig
from kiosk.live.liveness import TrackLiveness, nose_offset
from models.errors import UserError

# A face in 3D (x right, y down, z towards the camera), in eye half-distances: eyes,
# nose tip (standing out of the face), mouth corners.
FACE_3D = np.array(
    [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.8], [-0.8, 2.0, 0.0], [0.8, 2.0, 0.0]]
)
FLAT_PHOTO = FACE_3D * np.array([1.0, 1.0, 0.0])  # the same face printed on paper


def project(
    points: NDArray[np.float64], yaw_deg: float, distance: float | None = None
) -> NDArray[np.float64]:
    """Turn ``points`` about the vertical axis and project them (orthographic if no distance)."""
    t = math.radians(yaw_deg)
    rotation = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    turned = points @ rotation.T
    xy = turned[:, :2]
    if distance is not None:
        xy = xy * (distance / (distance - turned[:, 2:3]))
    return 300 + 40 * xy


CONFIG = LivenessConfig(min_frames=3, window=5, recheck_every=3, turn_threshold=0.12)


def feed(track: TrackLiveness, scores: list[float], kps: NDArray[np.float64] | None = None):  # type: ignore[no-untyped-def]
    verdict = None
    for score in scores:
        verdict = track.update(score, project(FACE_3D, 0) if kps is None else kps)
    return verdict


def test_nose_offset_is_zero_frontal_and_grows_with_a_turn() -> None:
    assert nose_offset(project(FACE_3D, 0)) == pytest.approx(0.0, abs=1e-9)
    left, right = nose_offset(project(FACE_3D, -12)), nose_offset(project(FACE_3D, 12))
    assert left < -0.07 and right > 0.07
    assert right - left >= CONFIG.turn_threshold


def test_nose_offset_ignores_any_motion_of_a_flat_photo() -> None:
    rng = np.random.default_rng(0)
    base = nose_offset(project(FLAT_PHOTO, 0))
    for _ in range(20):
        affine = rng.normal(size=(2, 2)) * 0.3 + np.eye(2)
        moved = project(FLAT_PHOTO, 0) @ affine.T + rng.normal(size=2) * 50
        assert nose_offset(moved) == pytest.approx(base, abs=1e-9)
    # A photo turned by 30 degrees in front of a real (perspective) camera.
    for yaw in (-30, 30):
        assert abs(nose_offset(project(FLAT_PHOTO, yaw, distance=8.0)) - base) < 0.03


def test_one_frame_decides_nothing() -> None:
    track = TrackLiveness(CONFIG)
    verdict = feed(track, [0.99])
    assert verdict.state == "uncertain" and verdict.prompt is None and verdict.live is None
    assert feed(track, [0.99]).state == "uncertain"
    verdict = feed(track, [0.99])
    assert verdict.state == "live" and verdict.is_live and verdict.live is True
    assert verdict.checks == 3


def test_spoof_scores_are_not_live() -> None:
    verdict = feed(TrackLiveness(CONFIG), [0.2, 0.05, 0.1])
    assert verdict.state == "not_live" and not verdict.is_live and verdict.live is False
    assert verdict.score == pytest.approx((0.2 + 0.05 + 0.1) / 3)


def test_a_few_odd_frames_flip_no_decision() -> None:
    track = TrackLiveness(CONFIG)
    feed(track, [0.95] * 5)
    assert feed(track, [0.05, 0.05]).state == "live"  # mean of the window stays in the band
    assert feed(track, [0.05, 0.05, 0.05]).state == "not_live"  # the window turned
    assert feed(track, [0.5]).state == "not_live"  # band again: the decision stands


def test_uncertain_asks_for_a_turn_and_a_real_turn_makes_it_live() -> None:
    track = TrackLiveness(CONFIG)
    verdict = feed(track, [0.45, 0.5, 0.4])
    assert verdict.state == "uncertain" and verdict.prompt == CONFIG.prompt
    for yaw in (0, -5, -10, -5, 0):
        verdict = track.update(0.45, project(FACE_3D, yaw))
        assert verdict.state == "uncertain" and verdict.prompt
    for yaw in (5, 10):
        verdict = track.update(0.45, project(FACE_3D, yaw))
    assert verdict.state == "live" and verdict.prompt is None


def test_a_waved_photo_never_passes_the_turn_cue() -> None:
    track = TrackLiveness(CONFIG)
    feed(track, [0.45, 0.5, 0.4], project(FLAT_PHOTO, 0))
    for yaw in range(-30, 31, 5):
        verdict = track.update(0.45, project(FLAT_PHOTO, yaw, distance=8.0))
    assert verdict.state == "uncertain" and verdict.prompt


def test_keypoint_failures_fake_no_turn() -> None:
    track = TrackLiveness(CONFIG)
    feed(track, [0.45, 0.5, 0.4])
    squashed = project(FACE_3D, 0)
    squashed[1] = squashed[0] + 0.5  # eyes on top of each other: a wild nose offset
    for kps in (project(FACE_3D, 0), squashed, project(FACE_3D, 0)):
        verdict = track.update(0.45, kps)
    assert verdict.state == "uncertain" and verdict.prompt


def test_no_prompt_without_the_active_cue() -> None:
    config = CONFIG.model_copy(update={"active_cue": False})
    verdict = feed(TrackLiveness(config), [0.45] * 6)
    assert verdict.state == "uncertain" and verdict.prompt is None


def test_a_turn_cannot_overrule_a_clear_spoof_score() -> None:
    track = TrackLiveness(CONFIG)
    feed(track, [0.45, 0.5, 0.4])
    for yaw in (-15, 15):
        track.update(0.05, project(FACE_3D, yaw))
    verdict = track.update(0.05, project(FACE_3D, 0))
    assert verdict.state == "not_live"


def test_decided_tracks_are_rechecked_every_nth_frame() -> None:
    track = TrackLiveness(CONFIG)
    feed(track, [0.9] * 3)
    pattern = []
    for _ in range(6):
        pattern.append(track.needs_check)
        track.update(0.9 if pattern[-1] else None, project(FACE_3D, 0))
    assert pattern == [False, False, True, False, False, True]
    undecided = TrackLiveness(CONFIG)
    feed(undecided, [0.5] * 3)
    assert undecided.needs_check


def test_config_defaults_and_validation() -> None:
    config = KioskConfig().liveness
    assert config.enabled and config.spoof_threshold < config.live_threshold
    with pytest.raises(ValueError, match="spoof_threshold"):
        LivenessConfig(live_threshold=0.4, spoof_threshold=0.5)
    with pytest.raises(ValueError, match="min_frames"):
        LivenessConfig(min_frames=10, window=5)


def test_config_file_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kiosk.config import load_config

    path = tmp_path / "config.toml"
    path.write_text("[liveness]\nenabled = false\nmin_frames = 4\n", encoding="utf-8")
    config = load_config(path).liveness
    assert not config.enabled and config.min_frames == 4
    path.write_text("[liveness]\nlive_treshold = 0.5\n", encoding="utf-8")
    with pytest.raises(UserError, match="live_treshold"):
        load_config(path)
