"""The trials console end to end: a real live pipeline on a shared video, a 1 s trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import Qt

from kiosk.build import live_pipeline
from kiosk.config import EventsConfig, KioskConfig, LiveConfig
from kiosk.trials.rules import Outcome, TrialResult
from kiosk.trials.store import TrialStore
from kiosk.ui.trials_window import TrialsWindow
from models.align import align_arcface
from models.detector import FaceDetector
from models.embedder import ArcFaceEmbedder
from models.gallery import EmbeddingGallery

SharedPath = Callable[..., Path]


def first_crops(video: Path, detector: FaceDetector, count: int = 5) -> list:
    capture = cv2.VideoCapture(str(video))
    crops = []
    try:
        while len(crops) < count:
            ok, frame = capture.read()
            assert ok, f"{video} ran out before {count} faces"
            faces = detector.detect(frame, mode="largest")
            if faces:
                crops.append(align_arcface(frame, faces[0].kps))
    finally:
        capture.release()
    return crops


@pytest.mark.slow
def test_console_runs_a_live_trial(
    qtbot, shared: SharedPath, model_dir: Path, detector: FaceDetector, tmp_path: Path
) -> None:
    embedder = ArcFaceEmbedder(model_dir / "mobilefacenet_128d.onnx")
    people = {
        name: first_crops(shared("videos", f"{name}.mp4"), detector)
        for name in ("solo_01", "solo_02")
    }
    gallery = EmbeddingGallery.from_crops(embedder, people)
    config = KioskConfig(
        kiosk=LiveConfig(loop=True, realtime=True, reclassify_every=1),
        events=EventsConfig(enabled=False),
    )
    spoof = {"on": False}  # a stand-in liveness veto the test switches for the attack trial
    pipeline = live_pipeline(
        config,
        source=str(shared("videos", "solo_01.mp4")),
        factory=lambda: gallery,
        veto=lambda track_id, frame, face: spoof["on"],
    )
    store = TrialStore(tmp_path / "trials.sqlite")
    session = store.create_session(
        label="console", duration=1.0, threshold=gallery.threshold, min_share=0.5
    )
    session.add_participant("solo_01", enrolled=True)
    session.add_participant("photo of solo_02", enrolled=False, attack=True)
    window = TrialsWindow(pipeline, session, liveness=True, poll_ms=20)
    qtbot.addWidget(window)
    try:
        window.start()
        qtbot.waitUntil(lambda: window.video.result is not None, timeout=20000)
        window.panel.roster.setCurrentRow(0)
        with qtbot.waitSignal(window.panel.trial_finished, timeout=20000) as blocker:
            qtbot.mouseClick(window.panel.start_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: window.overlay_text() not in ("", "TP: solo_01"), timeout=5000)
        result = blocker.args[0]
        assert isinstance(result, TrialResult)
        assert result.face_frames >= 5  # 25 fps video paced in real time for 1 s
        assert any(f.live is True for f in result.frames)  # named, so found live
        assert not any(f.live is False for f in result.frames)
        assert result.outcome is Outcome.TP and result.answer == "solo_01"
        assert result.thumbnail
        assert window.overlay_text() == "TP: solo_01"  # on two lines, "TP" and the answer
        assert window.overlay.text_fits() and not window.overlay.elided
        assert window.panel.metric_labels["tp"].text() == "1"
        # An attack: the same face held up, now found not live: refused, not named.
        spoof["on"] = True
        window.panel.roster.setCurrentRow(1)
        with qtbot.waitSignal(window.panel.trial_finished, timeout=20000) as blocker:
            window.panel.start_trial()
        attack = blocker.args[0]
        faces = [f for f in attack.frames if f.face]
        assert faces and all(f.live is False and f.best == "solo_01" for f in faces)
        assert attack.outcome is Outcome.ATTACK_REFUSED
        assert window.panel.metric_labels["apcer"].text() == "0.0%"
        window.grab()
    finally:
        window.shutdown()
    with store:
        saved = store.load_session().results
    assert [r.outcome for r in saved] == [Outcome.TP, Outcome.ATTACK_REFUSED]
    assert len(saved[0].frames) == len(result.frames)


def test_console_with_a_missing_video_is_a_user_error(tmp_path: Path, capsys) -> None:
    from kiosk.cli import main
    from kiosk.trials.runs import EnrolledRoster

    roster = EnrolledRoster(KioskConfig())
    assert roster.names == []  # an empty people store
    roster.close()
    code = main(["trials", "--source", str(tmp_path / "missing.mp4"), "--db", str(tmp_path / "t")])
    assert code == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # nothing written before the pipeline exists
