"""MiniFASNet liveness: the authors' crop recipe by hand, and the real models on the samples."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.cli import main
from kiosk.config import LivenessConfig
from kiosk.live.liveness import LivenessMonitor
from models.antispoof import (
    LIVENESS_MODELS,
    LivenessChecker,
    crop_face,
    scaled_box,
    to_input,
    xywh_from_corners,
)
from models.errors import ModelError
from models.registry import load_manifest, spec

SAMPLES = {
    "spoof_printed_photo.jpg": False,
    "spoof_tablet_screen.jpg": False,
    "live_face.jpg": True,
}


def test_corner_box_converts_like_the_authors_detector() -> None:
    # [int(left), int(top), int(right - left + 1), int(bottom - top + 1)]
    assert xywh_from_corners(np.array([10.7, 20.2, 50.9, 80.6])) == (10, 20, 41, 61)


def test_scaled_box_by_hand() -> None:
    # Inside: centre (110, 110), 20 * 3.95 = 79 wide: 70.5 .. 149.5, truncated.
    assert scaled_box(300, 200, (100, 100, 20, 20), 3.95) == (70, 70, 149, 149)
    # Top-left overflow is shifted back, not clipped: -29.5 .. 49.5 becomes 0 .. 79.
    assert scaled_box(300, 200, (0, 0, 20, 20), 3.95) == (0, 0, 79, 79)
    # Bottom-right: 240.5 .. 319.5 in x and 140.5 .. 219.5 in y, shifted by 20.5 each.
    assert scaled_box(300, 200, (270, 170, 20, 20), 3.95) == (220, 120, 299, 199)
    # Scale too large for the image: lowered to (60 - 1) / 40, then centred at (30, 30).
    assert scaled_box(100, 60, (10, 10, 40, 40), 4.0) == (0, 0, 59, 59)
    with pytest.raises(ValueError, match="positive size"):
        scaled_box(100, 60, (10, 10, 0, 40), 2.7)


def test_crop_is_the_hand_computed_window_unchanged() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)  # h=200, w=300
    # An 80-pixel window needs no resizing, so the crop must be it byte for byte,
    # channels in the image's (BGR) order.
    np.testing.assert_array_equal(crop_face(image, (270, 170, 20, 20), 3.95), image[120:, 220:])
    np.testing.assert_array_equal(crop_face(image, (0, 0, 20, 20), 3.95), image[:80, :80])
    # Centre (30, 30), 60 wide: corners 0 .. 60 inclusive, so 61 pixels resized bilinearly.
    expected = cv2.resize(image[0:61, 0:61], (80, 80), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(crop_face(image, (10, 10, 40, 40), 1.5), expected)


def test_network_input_is_bgr_0_255_channels_first() -> None:
    crop = np.zeros((80, 80, 3), dtype=np.uint8)
    crop[5, 7] = (200, 100, 30)  # B, G, R
    tensor = to_input(crop)
    assert tensor.shape == (1, 3, 80, 80) and tensor.dtype == np.float32
    assert tensor[0, :, 5, 7].tolist() == [200.0, 100.0, 30.0]  # not divided by 255


def test_manifest_lists_both_models_with_their_checksums() -> None:
    manifest = load_manifest()
    for name, scale in LIVENESS_MODELS:
        model = manifest[name]
        assert model.kind == "antispoof" and model.licence == "Apache-2.0"
        assert f"{scale}x" in model.preprocessing and "BGR" in model.preprocessing
    assert spec("minifasnet_v2").sha256.startswith("4eed38f0")
    assert spec("minifasnet_v1se").sha256.startswith("d819a69b")


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"minifasnet_v2\.onnx.*4eed38f0"):
        LivenessChecker.from_dir(tmp_path)


@pytest.fixture(scope="module")
def checker(model_dir: Path) -> LivenessChecker:
    return LivenessChecker.from_dir(model_dir, device="cpu")


def _sample(shared: Callable[..., Path], name: str) -> np.ndarray:
    image = cv2.imread(str(shared("antispoof", name)))
    assert image is not None
    return image


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_with_our_detector_boxes(
    name: str, shared: Callable[..., Path], detector, checker: LivenessChecker
) -> None:  # type: ignore[no-untyped-def]
    image = _sample(shared, name)
    faces = detector.detect(image, mode="largest")
    assert len(faces) == 1
    score = checker.check(image, faces[0])
    assert sum(score.probs) == pytest.approx(1.0, abs=1e-4)
    assert score.is_live is SAMPLES[name]
    if SAMPLES[name]:
        assert score.live > 0.95
    else:
        assert score.live < 0.3


@pytest.mark.shared
def test_feeding_rgb_would_pass_the_attacks(
    shared: Callable[..., Path], detector, checker: LivenessChecker
) -> None:  # type: ignore[no-untyped-def]
    """Guards the colour order: the same attacks in RGB fool the models (so BGR matters)."""
    for name in ("spoof_printed_photo.jpg", "spoof_tablet_screen.jpg"):
        image = _sample(shared, name)
        face = detector.detect(image, mode="largest")[0]
        assert not checker.check(image, face).is_live
        assert checker.check(np.ascontiguousarray(image[:, :, ::-1]), face).is_live


@pytest.mark.shared
def test_monitor_over_frames_refuses_the_attacks_and_accepts_the_live_face(
    shared: Callable[..., Path], detector, checker: LivenessChecker
) -> None:  # type: ignore[no-untyped-def]
    config = LivenessConfig()
    monitor = LivenessMonitor(config, checker)
    for track_id, (name, live) in enumerate(SAMPLES.items()):
        image = _sample(shared, name)
        face = detector.detect(image, mode="largest")[0]
        states = [monitor.update(track_id, image, face).state for _ in range(config.min_frames)]
        assert states[:-1] == ["uncertain"] * (config.min_frames - 1)
        assert states[-1] == ("live" if live else "not_live")
    assert monitor.checks == 3 * config.min_frames
    monitor.retain([0])
    image = _sample(shared, "live_face.jpg")
    face = detector.detect(image, mode="largest")[0]
    assert monitor.update(2, image, face).state == "uncertain"  # track 2 was forgotten
    from kiosk.build import liveness_monitor
    from kiosk.config import KioskConfig

    assert liveness_monitor(KioskConfig(liveness=LivenessConfig(enabled=False))) is None


@pytest.mark.shared
def test_small_faces_are_not_judged(
    shared: Callable[..., Path], detector, checker: LivenessChecker
) -> None:  # type: ignore[no-untyped-def]
    image = _sample(shared, "spoof_tablet_screen.jpg")
    face = detector.detect(image, mode="largest")[0]
    config = LivenessConfig(min_face_px=int(face.size) + 1)
    monitor = LivenessMonitor(config, checker)
    for _ in range(config.window):
        verdict = monitor.update(1, image, face)
    assert verdict.state == "uncertain" and verdict.prompt == config.closer_prompt
    assert monitor.checks == 0


@pytest.mark.shared
def test_monitor_alternates_the_two_models(
    shared: Callable[..., Path], detector, checker: LivenessChecker
) -> None:  # type: ignore[no-untyped-def]
    image = _sample(shared, "spoof_printed_photo.jpg")
    face = detector.detect(image, mode="largest")[0]
    singles = [checker.check(image, face, index).probs for index in range(checker.model_count)]
    both = checker.check(image, face).probs
    assert np.allclose(np.mean(singles, axis=0), both, atol=1e-5)  # the authors' fusion
    monitor = LivenessMonitor(LivenessConfig(), checker)
    seen = [monitor.update(7, image, face).frame_score for _ in range(4)]
    assert [s.probs if s else None for s in seen] == [singles[0], singles[1]] * 2
    fused = LivenessMonitor(LivenessConfig(alternate_models=False), checker)
    score = fused.update(7, image, face).frame_score
    assert score is not None and np.allclose(score.probs, both)


@pytest.mark.shared
def test_check_command_prints_one_json_line_per_face(
    shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(shared("antispoof", name)) for name in sorted(SAMPLES)]
    assert main(["liveness", "check", *paths]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {Path(row["image"]).name: row["live"] for row in rows} == SAMPLES
    assert all(0.0 <= row["liveness"] <= 1.0 for row in rows)


def test_check_command_explains_a_bad_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["liveness", "check", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["liveness", "check", str(tmp_path / "missing.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.shared
def test_check_command_reports_an_image_without_a_face(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, dtype=np.uint8))
    assert main(["liveness", "check", str(blank)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row == {"image": str(blank), "face": None, "live": None}


@pytest.mark.shared
@pytest.mark.slow
def test_bench_command_writes_json(
    shared: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "liveness", "--json", str(out), "--max-frames", "20", "--repeats", "5"]
    args += ["--antispoof", str(shared("antispoof"))]
    args += ["--videos", str(shared("videos", "solo_01.mp4"))]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["attacks_refused"] and result["live_sample_accepted"]
    assert set(result["cost_ms_per_check"]) == {"both_models", "minifasnet_v2", "minifasnet_v1se"}
    assert result["cost_ms_per_check"]["both_models"]["repeats"] == 5
    (video,) = result["videos"]
    assert video["frames"] == 20 and video["face_frames"] >= 15
    assert result["summary"]["tracks_judged"] == 1 and result["summary"]["tracks_refused"] == 0
    assert result["summary"]["checks"] < video["face_frames"]  # decided tracks are sampled


def test_recognize_with_liveness_and_no_bundle(
    shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`kiosk recognize --liveness` names nobody without a bundle and refuses both attacks."""
    assert main(["recognize", "--liveness", str(shared("antispoof"))]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {Path(row["source"]).name: row for row in map(json.loads, lines)}
    assert set(rows) == {"live_face.jpg", "spoof_printed_photo.jpg", "spoof_tablet_screen.jpg"}
    assert all(row["name"] == "unknown" and row["confidence"] is None for row in rows.values())
    assert rows["live_face.jpg"]["live"] is True and rows["live_face.jpg"]["liveness"] > 0.9
    assert rows["spoof_printed_photo.jpg"]["live"] is False
    assert rows["spoof_tablet_screen.jpg"]["live"] is False


def test_recognize_needs_a_bundle_or_liveness(
    shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recognize", str(shared("antispoof"))]) == 2
    assert "--bundle" in capsys.readouterr().err
