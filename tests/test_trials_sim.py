"""`kiosk trials simulate` end to end on the shared videos, and its building blocks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.errors import UserError
from kiosk.trials import TrialSession
from kiosk.trials_sim import (
    Clip,
    QualityGates,
    enroll_from_video,
    gallery_factory,
    run_simulation,
    trial_windows,
)
from kiosk.trials_store import TrialStore
from models.detector import FaceDetector

SharedPath = Callable[..., Path]


@pytest.fixture(scope="module")
def small_detector(model_dir: Path) -> FaceDetector:
    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)


def test_trial_windows() -> None:
    assert trial_windows(1.0, 12.0, 5.0) == [(1.0, 6.0), (6.0, 11.0)]  # 1 s left over: dropped
    assert trial_windows(1.0, 3.1, 5.0) == [(1.0, 3.1)]  # a short clip gives one short trial
    assert trial_windows(0.0, 10.0, 5.0) == [(0.0, 5.0), (5.0, 10.0)]
    assert trial_windows(4.0, 3.0, 5.0) == []


def test_enrollment_gates_are_deterministic(
    shared: SharedPath, small_detector: FaceDetector
) -> None:
    clip = shared("videos", "solo_06.mp4")
    shots = enroll_from_video(clip, small_detector, 1.0)
    again = enroll_from_video(clip, small_detector, 1.0)
    assert [s.frame_index for s in shots] == [s.frame_index for s in again]
    assert 1 <= len(shots) <= QualityGates().max_shots
    assert all(s.frame_index < 25 for s in shots)  # the first second at 25 fps only
    assert all(s.face.size >= QualityGates().min_face for s in shots)
    # Stricter duplicate rejection keeps fewer shots; a huge minimum size keeps none.
    fewer = enroll_from_video(clip, small_detector, 1.0, QualityGates(max_similarity=0.5))
    assert len(fewer) < len(shots)
    assert enroll_from_video(clip, small_detector, 1.0, QualityGates(min_face=2000)) == []


def test_no_usable_enrollment_frame_is_a_user_error(
    shared: SharedPath, small_detector: FaceDetector, model_dir: Path
) -> None:
    clips = [Clip("p", shared("videos", "solo_06.mp4"), True)]
    factory = gallery_factory(model_dir / "mobilefacenet_128d.onnx", 0.5)
    with pytest.raises(UserError, match="quality gates"):
        run_simulation(
            clips, small_detector, factory, TrialSession(), gates=QualityGates(min_face=2000)
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
