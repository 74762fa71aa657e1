"""`kiosk trials simulate` end to end on the shared videos, and its building blocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from enroll.config import EnrollConfig
from kiosk.cli import main
from kiosk.config import LivenessConfig
from kiosk.trials.session import TrialSession
from kiosk.trials.simulation import (
    Clip,
    enroll_from_video,
    gallery_factory,
    run_simulation,
    trial_windows,
)
from kiosk.trials.store import TrialStore
from models.detector import FaceDetector
from models.errors import UserError

SharedPath = Callable[..., Path]


@pytest.fixture(scope="module")
def small_detector(model_dir: Path) -> FaceDetector:
    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)


def test_trial_windows() -> None:
    assert trial_windows(1.0, 12.0, 5.0) == [(1.0, 6.0), (6.0, 11.0)]  # 1 s left over: dropped
    assert trial_windows(1.0, 3.1, 5.0) == [(1.0, 3.1)]  # a short clip gives one short trial
    assert trial_windows(0.0, 10.0, 5.0) == [(0.0, 5.0), (5.0, 10.0)]
    assert trial_windows(4.0, 3.0, 5.0) == []


def test_enrollment_uses_the_wizard_capture_and_is_deterministic(
    shared: SharedPath, small_detector: FaceDetector
) -> None:
    clip = shared("videos", "solo_06.mp4")
    config = EnrollConfig()
    photos = enroll_from_video(clip, small_detector, 1.0, config)
    again = enroll_from_video(clip, small_detector, 1.0, config)
    assert 1 <= len(photos) <= config.photos
    assert all(photo.shape == (224, 224, 3) for photo in photos)  # the wizard's 224 crops
    assert all(np.array_equal(a, b) for a, b in zip(photos, again, strict=True))
    # The wizard's gates decide: stricter duplicate rejection keeps fewer, a huge minimum
    # face size keeps none.
    fewer = enroll_from_video(clip, small_detector, 1.0, EnrollConfig(duplicate_similarity=0.5))
    assert len(fewer) < len(photos)
    assert enroll_from_video(clip, small_detector, 1.0, EnrollConfig(min_face_size=2000)) == []


def test_no_usable_enrollment_frame_is_a_user_error(
    shared: SharedPath, small_detector: FaceDetector, model_dir: Path
) -> None:
    clips = [Clip("p", shared("videos", "solo_06.mp4"), True)]
    factory = gallery_factory(model_dir / "mobilefacenet_128d.onnx", 0.5)
    with pytest.raises(UserError, match="enrollment capture's gates"):
        run_simulation(
            clips,
            small_detector,
            factory,
            TrialSession(),
            enroll_config=EnrollConfig(min_face_size=2000),
        )


def test_leave_one_out_adds_held_out_strangers(
    shared: SharedPath, small_detector: FaceDetector, model_dir: Path
) -> None:
    clips = [
        Clip("solo_06", shared("videos", "solo_06.mp4"), True),
        Clip("solo_07", shared("videos", "solo_07.mp4"), True),
    ]
    factory = gallery_factory(model_dir / "mobilefacenet_128d.onnx", 0.5)
    session = TrialSession()
    run_simulation(clips, small_detector, factory, session, stride=5, leave_one_out=True)
    names = [(p.name, p.enrolled) for p in session.participants]
    assert names == [
        ("solo_06", True),
        ("solo_07", True),
        ("solo_06 (held out)", False),
        ("solo_07 (held out)", False),
    ]
    held_out = [r for r in session.results if not r.participant.enrolled]
    enrolled = [r for r in session.results if r.participant.enrolled]
    # The same windows, once as the enrolled person and once as a stranger.
    assert [r.source for r in held_out] == [r.source for r in enrolled]
    assert all(r.answer != r.participant.name for r in held_out)
    assert [r.outcome.value for r in session.results] == ["TP", "TP", "TN", "TN"]


def test_missing_inputs_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["trials", "simulate", "--videos", str(tmp_path), "--enrolled", "nobody"])
    assert code == 2
    assert "nobody.mp4 does not exist" in capsys.readouterr().err
    missing = str(tmp_path / "none.sqlite")
    assert main(["trials", "export", "--db", missing, "--json", str(tmp_path / "x")]) == 2
    assert "no trials database" in capsys.readouterr().err
    empty = tmp_path / "empty.sqlite"
    TrialStore(empty).close()
    assert main(["trials", "export", "--db", str(empty), "--json", str(tmp_path / "x")]) == 2
    assert "no trial session" in capsys.readouterr().err
    assert main(["trials", "simulate", "--stride", "0", "--videos", str(tmp_path)]) == 2
    assert "--stride must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_simulation_end_to_end(shared: SharedPath, tmp_path: Path) -> None:
    """The default scenario, every third frame, saved, exported and re-exported."""
    videos = shared("videos")
    db, out, report = tmp_path / "t.sqlite", tmp_path / "s.json", tmp_path / "r.html"
    args = ["trials", "simulate", "--videos", str(videos), "--stride", "3", "--db", str(db)]
    assert main([*args, "--json", str(out), "--report", str(report)]) == 0
    summary = json.loads(out.read_text())
    for key in ("tp", "fp", "tn", "fn", "misidentified", "accuracy", "fpr", "fnr", "trials"):
        assert key in summary
    # 6 enrolled clips after their first second: 1+2+6+3+2+1 windows of 5 s; visitors 1+2+1.
    assert summary["trials"] == 19
    assert summary["tp"] + summary["fn"] + summary["misidentified"] == 15
    assert summary["tn"] + summary["fp"] - summary["misidentified"] == 4
    assert summary["no_face"] == 0
    # MobileFaceNet with real weights: the goal is >= 95% accuracy, FPR <= 2%, FNR <= 5%.
    assert summary["accuracy"] >= 0.95
    assert summary["fpr"] <= 0.02 and summary["fnr"] <= 0.05
    # Liveness runs by default; every clip is a live person and none is refused.
    assert summary["liveness"]["enabled"] and summary["liveness"]["tracks"] == 19
    assert summary["liveness"]["refused_by_liveness"] == 0
    enroll_frames = {c["name"]: c["enrolled"] for c in summary["clips"]}
    for trial in summary["trial_log"]:
        if enroll_frames[trial["participant"]]:
            assert trial["started_at"] >= 1.0  # never overlaps the enrollment second
        assert trial["face_frames"] > 0
    assert "data:image/png;base64," in report.read_text()
    # The saved session exports to the same figures.
    again = tmp_path / "again.json"
    assert main(["trials", "export", "--db", str(db), "--json", str(again)]) == 0
    reloaded = json.loads(again.read_text())
    for key in ("tp", "fp", "tn", "fn", "misidentified", "accuracy", "fpr", "fnr", "trials"):
        assert reloaded[key] == summary[key]


def test_simulation_records_liveness_per_track(
    shared: SharedPath, small_detector: FaceDetector, model_dir: Path
) -> None:
    from kiosk.live.liveness import LivenessMonitor
    from kiosk.trials.rules import liveness_refusals
    from models.antispoof import LivenessChecker

    monitor = LivenessMonitor(LivenessConfig(), LivenessChecker.from_dir(model_dir))
    clips = [Clip("solo_06", shared("videos", "solo_06.mp4"), True)]
    factory = gallery_factory(model_dir / "mobilefacenet_128d.onnx", 0.5)
    session = TrialSession()
    timings = run_simulation(clips, small_detector, factory, session, stride=3, liveness=monitor)
    assert timings.liveness_checks > 0
    faces = [f for r in session.results for f in r.frames if f.face]
    # Undecided until min_frames checks, then decided: the first frames record None.
    assert faces[0].live is None
    assert any(f.live is not None for f in faces)
    summary = liveness_refusals(session.results)
    assert summary["tracks"] == len(session.results)
    # A live person on camera: the real MiniFASNets call this track live, not a photo.
    assert summary["refused_by_liveness"] == 0
    assert all(r.live_frames[0] > 0 for r in session.results)


def test_simulation_skips_liveness_when_disabled(
    shared: SharedPath, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text("[liveness]\nenabled = false\n")
    out = tmp_path / "s.json"
    args = ["--config", str(config), "trials", "simulate", "--videos", str(shared("videos"))]
    args += ["--enrolled", "solo_06", "--visitors", "--stride", "10", "--json", str(out)]
    assert main(args) == 0
    assert "liveness: skipped ([liveness] enabled = false)" in capsys.readouterr().err
    summary = json.loads(out.read_text())
    assert summary["liveness"] == {"enabled": False}
    assert all(f["live"] is None for t in summary["trial_log"] for f in t["frame_decisions"])
