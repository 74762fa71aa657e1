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
from kiosk.trials.recognizers import GalleryFactory
from kiosk.trials.session import TrialSession
from kiosk.trials.simulation import (
    Clip,
    Contender,
    SkippedClip,
    enroll_from_video,
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


def gallery(model_dir: Path, session: TrialSession | None = None) -> Contender:
    """The MobileFaceNet gallery and the session its trials go into."""
    factory = GalleryFactory(model_dir / "mobilefacenet_128d.onnx", 0.5)
    return Contender(factory, session if session is not None else TrialSession(threshold=0.5))


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
    enrollment = enroll_from_video(clip, small_detector, 1.0, config)
    photos = enrollment.photos
    again = enroll_from_video(clip, small_detector, 1.0, config).photos
    assert 1 <= len(photos) <= config.photos
    assert all(photo.shape == (224, 224, 3) for photo in photos)  # the wizard's 224 crops
    assert all(np.array_equal(a, b) for a, b in zip(photos, again, strict=True))
    assert enrollment.frames == 25  # one second of a 25 fps clip
    # The wizard's gates decide: stricter duplicate rejection keeps fewer, a huge minimum
    # face size keeps none, and the size gate is the one that refused every frame.
    fewer = enroll_from_video(clip, small_detector, 1.0, EnrollConfig(duplicate_similarity=0.5))
    assert len(fewer.photos) < len(photos)
    assert fewer.gates.get("duplicate", 0) > enrollment.gates.get("duplicate", 0)
    none = enroll_from_video(clip, small_detector, 1.0, EnrollConfig(min_face_size=2000))
    assert none.photos == [] and none.gates == {"size": 25} and none.blocked_most == "size"
    assert none.gate_name("size") == "size" and none.poses_asked == {}


def test_a_clip_no_frame_of_which_passes_the_pose_gate_names_the_pose(
    shared: SharedPath, small_detector: FaceDetector
) -> None:
    clip = Clip("p", shared("videos", "solo_06.mp4"), True)
    # A frontal pose within 0.1 degree of yaw: no real head holds it for a second.
    strict = EnrollConfig(poses=("front",), yaw_target_deg=0.1, front_yaw_deg=0.1)
    enrollment = enroll_from_video(clip.path, small_detector, 1.0, strict)
    assert enrollment.photos == [] and enrollment.blocked_most == "pose"
    assert enrollment.poses_asked == {"front": enrollment.gates["pose"]}
    assert enrollment.gate_name("pose") == "pose 'front'"
    skipped = SkippedClip(clip, 1.0, enrollment)
    assert "the pose gate 'front' (not the pose asked for) blocked most:" in skipped.message
    assert skipped.as_dict()["blocked_by"] == "pose 'front'"


def test_no_usable_enrollment_frame_at_all_is_a_user_error_naming_the_gate(
    shared: SharedPath, small_detector: FaceDetector, model_dir: Path
) -> None:
    clips = [Clip("p", shared("videos", "solo_06.mp4"), True)]
    with pytest.raises(UserError, match="nobody could be enrolled: skipped p") as error:
        run_simulation(
            clips,
            small_detector,
            [gallery(model_dir)],
            enroll_config=EnrollConfig(min_face_size=2000),
        )
    assert "the size gate (face too small) blocked most: 25 of 25 frames" in str(error.value)


def test_leave_one_out_adds_held_out_strangers(
    shared: SharedPath, small_detector: FaceDetector, model_dir: Path
) -> None:
    clips = [
        Clip("solo_06", shared("videos", "solo_06.mp4"), True),
        Clip("solo_07", shared("videos", "solo_07.mp4"), True),
    ]
    contender = gallery(model_dir)
    session = contender.session
    run_simulation(clips, small_detector, [contender], stride=5, leave_one_out=True)
    # One gallery from everyone, then one without each person; every frame names its own.
    assert [(b["label"], b["held_out"]) for b in contender.builds] == [
        ("embedding_gallery v1", None),
        ("embedding_gallery v2", "solo_06"),
        ("embedding_gallery v3", "solo_07"),
    ]
    labels = [{f.recognizer for f in r.frames} for r in session.results]
    assert labels == [
        {"embedding_gallery v1"},
        {"embedding_gallery v1"},
        {"embedding_gallery v2"},
        {"embedding_gallery v3"},
    ]
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
    """The default scenario, every sixth frame, saved, exported and re-exported."""
    videos = shared("videos")
    db, out, report = tmp_path / "t.sqlite", tmp_path / "s.json", tmp_path / "r.html"
    args = ["trials", "simulate", "--videos", str(videos), "--stride", "6", "--db", str(db)]
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
    contender = gallery(model_dir)
    session = contender.session
    result = run_simulation(clips, small_detector, [contender], stride=3, liveness=monitor)
    assert result.liveness_checks > 0
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


def blank_clip(path: Path, seconds: float = 3.0) -> Path:
    """A clip with no face in it: every frame fails the capture's one-face gate."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    for _ in range(int(25 * seconds)):
        writer.write(np.full((240, 320, 3), 128, dtype=np.uint8))
    writer.release()
    return path


def test_an_unenrollable_clip_is_skipped_and_reported(
    shared: SharedPath, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = blank_clip(tmp_path / "nobody.mp4")
    out, report = tmp_path / "s.json", tmp_path / "r.html"
    args = ["trials", "simulate", "--videos", str(shared("videos")), "--stride", "10"]
    args += ["--enrolled", "solo_06", str(blank), "--visitors", "solo_07"]
    assert main([*args, "--json", str(out), "--report", str(report)]) == 0
    printed = capsys.readouterr()
    summary = json.loads(out.read_text())
    assert summary["skipped_clips"] == [
        {
            "name": "nobody",
            "file": "nobody.mp4",
            "enroll_seconds": 1.0,
            "frames": 25,
            "photos": 0,
            "blocked_most": "one_face",
            "blocked_by": "one_face",
            "gates": {"one_face": 25},
            "poses_asked": {},
        }
    ]
    assert "skipped nobody: no enrollment photo in its first 1 s; blocked most by one_face" in (
        printed.out
    )
    assert "the one_face gate (not exactly one face) blocked most: 25 of 25 frames" in printed.err
    # The run went on without the clip: solo_06 and solo_07 had their trials.
    assert {t["participant"] for t in summary["trial_log"]} == {"solo_06", "solo_07"}
    assert [c["name"] for c in summary["clips"]] == ["solo_06", "solo_07"]
    assert "Clips skipped: no enrollment photo" in report.read_text()
    # Both recorded in the kiosk's trials database, for erasure; they cannot be made
    # again (the simulation's facts are not in a database), so an erasure deletes them.
    from kiosk.config import load_config
    from kiosk.trials.runs import default_database
    from kiosk.trials.store import TrialStore

    with TrialStore(default_database(load_config())) as store:
        records = store.reports()
    assert [(r.path.name, r.kind, r.session_id) for r in records] == [
        ("s.json", "json", None),
        ("r.html", "html", None),
    ]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (out, report))


def test_clip_without_its_weights_says_how_to_fetch_them(
    shared: SharedPath, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"  # the shared models, but no RN50.pt
    models.mkdir()
    for file in shared("models").iterdir():
        (models / file.name).symlink_to(file)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[models]\ndir = "{models}"\n[clip]\npretrained = "openai"\n')
    args = ["--config", str(config), "trials", "simulate", "--videos", str(shared("videos"))]
    assert main([*args, "--recognizer", "clip"]) == 2
    err = capsys.readouterr().err
    assert "RN50.pt (clip_rn50_openai) is missing" in err
    assert "`kiosk models fetch clip_rn50_openai`" in err and "--pretrained none" in err
    # The fusion stands on the same CLIP: the same answer.
    assert main([*args, "--recognizer", "fusion", "--pretrained", "openai"]) == 2


@pytest.mark.slow
def test_clip_and_fusion_decide_the_simulated_trials(
    shared: SharedPath, tiny_clip: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny untrained CLIP, finetuned on the enrollment photos, side by side with the
    fusion and the gallery, with leave-one-out; everything labelled UNTRAINED."""
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[clip]\nmodel = "{tiny_clip}"\npretrained = "none"\n[train]\nepochs = 3\n')
    out, report, db = tmp_path / "s.json", tmp_path / "r.html", tmp_path / "t.sqlite"
    args = ["--config", str(config), "trials", "simulate", "--videos", str(shared("videos"))]
    args += ["--enrolled", "solo_03", "solo_05", "solo_06", "--visitors", "solo_07"]
    args += ["--stride", "10", "--leave-one-out", "--db", str(db)]
    args += ["--recognizer", "clip", "--recognizer", "fusion", "--recognizer", "gallery"]
    assert main([*args, "--json", str(out), "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert summary["recognizers"] == ["clip", "fusion", "gallery"]
    assert summary["untrained"] == ["clip", "fusion"] and "UNTRAINED" in summary["warning"]
    assert printed.startswith("WARNING: this recognizer stands on an UNTRAINED CLIP")
    rows = {row["recognizer"]: row for row in summary["comparison"]}
    assert rows["clip"]["label"] == "clip v1" and rows["fusion"]["label"] == "fusion v1"
    assert rows["gallery"]["label"] == "embedding_gallery v1"
    assert rows["clip"]["untrained"] and not rows["gallery"]["untrained"]
    clip, fusion = summary["runs"]["clip"], summary["runs"]["fusion"]
    # CLIP was trained with the [train] recipe: one bundle from everyone, one per held-out
    # person (from the same cached features), each with its own version.
    assert clip["settings"]["epochs"] == 3 and clip["settings"]["batch_size"] == 16
    assert clip["settings"]["split"].startswith("80%/20%")
    assert [(b["label"], b["held_out"]) for b in clip["bundles"]] == [
        ("clip v1", None),
        ("clip v2", "solo_03"),
        ("clip v3", "solo_05"),
        ("clip v4", "solo_06"),
    ]
    assert clip["bundles"][0]["people"] == ["solo_03", "solo_05", "solo_06"]
    assert clip["bundles"][1]["people"] == ["solo_05", "solo_06"]
    # Every frame names the bundle that decided it: v1 for the enrolled and the visitor,
    # the held-out bundle for each held-out rerun.
    for run, kind in ((clip, "clip"), (fusion, "fusion")):
        expected = {"solo_03 (held out)": 2, "solo_05 (held out)": 3, "solo_06 (held out)": 4}
        for trial in run["trial_log"]:
            version = expected.get(trial["participant"], 1)
            assert trial["recognizer"] == f"{kind} v{version}"
            assert {f["recognizer"] for f in trial["frame_decisions"]} == {f"{kind} v{version}"}
    # The fusion is CLIP's answer, confirmed or refused by the gallery: the same best name
    # and softmax confidence on every frame, and never a name CLIP did not give.
    clip_frames = [f for t in clip["trial_log"] for f in t["frame_decisions"] if f["face"]]
    fused = [f for t in fusion["trial_log"] for f in t["frame_decisions"] if f["face"]]
    assert len(clip_frames) == len(fused) > 0
    for c, f in zip(clip_frames, fused, strict=True):
        assert (f["best"], f["confidence"]) == (c["best"], pytest.approx(c["confidence"]))
        assert f["accepted"] in (None, c["accepted"])
        assert 0.0 <= c["confidence"] <= 1.0  # a softmax, not a cosine
    # One report with every recognizer, labelled UNTRAINED.
    page = report.read_text()
    assert "recognizers compared (UNTRAINED CLIP)" in page
    assert "clip v1: clip kiosk-tiny-rn, pretrained none: UNTRAINED" in page
    assert "embedding_gallery v1: embedding_gallery MobileFaceNet" in page
    # Each recognizer's session is saved with its description and its per-frame labels.
    again = tmp_path / "again.json"
    assert main(["trials", "export", "--db", str(db), "--session", "1", "--json", str(again)]) == 0
    reloaded = json.loads(again.read_text())
    assert reloaded["untrained"] and reloaded["description"].endswith("UNTRAINED")
    assert reloaded["tp"] == clip["tp"] and reloaded["fp"] == clip["fp"]
    labels = [t["recognizer"] for t in reloaded["trial_log"]]
    assert labels == [t["recognizer"] for t in clip["trial_log"]]


def test_the_simulated_gallery_takes_the_configured_threshold(model_dir: Path) -> None:
    from kiosk.config import KioskConfig
    from kiosk.trials.runs import SimulationOptions, simulation_factories
    from models.train.bundle import DetectorRecord

    def thresholds(recognizer: dict[str, object], **options: object) -> list[float]:
        config = KioskConfig.model_validate(
            {"models": {"dir": str(model_dir)}, "recognizer": recognizer}
        )
        factories = simulation_factories(
            config, SimulationOptions(**options), DetectorRecord("scrfd_2.5g", 320)
        )
        return [factory.threshold for factory in factories]

    assert thresholds({}) == [0.5]
    assert thresholds({"gallery_threshold": 0.42}) == [0.42]
    assert thresholds({"gallery_threshold": 0.42}, threshold=0.3) == [0.3]
    # A threshold set for a CLIP-embedding gallery is not MobileFaceNet's.
    assert thresholds({"embedder": "clip", "gallery_threshold": 0.9}) == [0.5]
    with pytest.raises(UserError, match="one --recognizer only"):
        thresholds({}, recognizers=("gallery", "clip"), threshold=0.3)


def test_pretrained_auto_takes_the_openai_weights_when_they_are_there(tmp_path: Path) -> None:
    from kiosk.config import KioskConfig
    from kiosk.trials.runs import clip_pretrained

    config = KioskConfig.model_validate({"models": {"dir": str(tmp_path)}})
    assert clip_pretrained(config, None) == config.clip.pretrained == "openai"
    assert clip_pretrained(config, "none") == "none"
    assert clip_pretrained(config, "auto") == "none"  # no RN50.pt: untrained
    (tmp_path / "RN50.pt").write_bytes(b"weights")
    assert clip_pretrained(config, "auto") == "openai"
    with pytest.raises(UserError, match="openai, none or auto"):
        clip_pretrained(config, "laion")
