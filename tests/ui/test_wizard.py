"""The enrollment wizard, driven offscreen by pytest-qt, with videos standing in for the camera."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from enroll.config import EnrollConfig
from enroll.session import CaptureSession
from enroll.store import PeopleStore
from enroll.training import rebuild_gallery
from kiosk.training import GalleryRefresh
from kiosk.ui.wizard import EnrollWizard
from models.align import CLIP_SIZE, align_face, resize_crop
from tests.helpers import ROOT, skip_or_fail

VOLUNTEERS = {"solo_02.mp4": "Amélie Poulain", "solo_03.mp4": "Bartholomew", "solo_07.mp4": "陈静"}


def video_reader(path: Path) -> Callable[[], np.ndarray | None]:
    capture = cv2.VideoCapture(str(path))

    def read() -> np.ndarray | None:
        ok, frame = capture.read()
        return frame if ok else None  # past the end: like a camera unplugged

    return read


def to_capture(qtbot, wizard: EnrollWizard, name: str) -> None:  # type: ignore[no-untyped-def]
    """Show the wizard, agree and name the volunteer: the capture page runs."""
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.consent_page.agree.setChecked(True)
    wizard.next()
    wizard.name_page.name_edit.setText(name)
    wizard.next()
    assert wizard.currentPage() is wizard.capture_page


@pytest.fixture(autouse=True)
def _no_capture_thread_outlives_its_wizard(qtbot) -> Iterator[None]:  # type: ignore[no-untyped-def]
    yield
    qtbot.waitUntil(
        lambda: not any(t.name == "enroll-capture" for t in threading.enumerate()), timeout=3000
    )


@pytest.fixture(scope="module")
def detector320(model_dir: Path):  # type: ignore[no-untyped-def]
    from models.detector import FaceDetector

    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)


@pytest.mark.slow
def test_wizard_enrolls_three_volunteers_from_videos(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, shared: Callable[..., Path], model_dir: Path, detector320
) -> None:
    from models.embedder import ArcFaceEmbedder
    from models.registry import model_path

    embedder = ArcFaceEmbedder(model_path("mobilefacenet_128d", model_dir))
    # 6°: with the yaw measured along the eye line (a tilted head no longer reads as
    # turned), solo_03 turns right past -7° in only two usable frames.
    config = EnrollConfig(photos=15, min_photos=8, yaw_target_deg=6.0, front_yaw_deg=6.0)
    store = PeopleStore(tmp_path / "store")
    update = GalleryRefresh(store, embedder, threshold=0.5)
    for video, name in VOLUNTEERS.items():
        wizard = EnrollWizard(
            store, config, video_reader(shared("videos", video)), detector320, update
        )
        qtbot.addWidget(wizard)
        wizard.show()

        def click_next(w: QWizard = wizard) -> None:
            qtbot.mouseClick(w.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)

        # consent: nothing moves on until the volunteer agrees
        assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
        qtbot.mouseClick(wizard.consent_page.agree, Qt.MouseButton.LeftButton)
        click_next()
        assert wizard.currentPage() is wizard.name_page
        # name: unsafe and duplicate names are refused with a message
        wizard.name_page.name_edit.setText("../etc")
        click_next()
        assert wizard.currentPage() is wizard.name_page
        assert "path separator" in wizard.name_page.error.text()
        if store.people():
            wizard.name_page.name_edit.setText(store.people()[0].name.upper())
            click_next()
            assert "already enrolled" in wizard.name_page.error.text()
        wizard.name_page.name_edit.setText(name)
        click_next()
        # capture: photos come automatically, Next opens at the minimum
        page = wizard.capture_page
        assert wizard.currentPage() is page and not page.isComplete()
        qtbot.waitUntil(lambda p=page: p.session.done, timeout=120_000)
        assert len(page.session.photos) == 15
        qtbot.waitUntil(lambda p=page: all(bar.value() == 3 for bar in p.bars.values()))
        assert "all photos taken" in page.guidance.text()
        click_next()
        # review: reject one crop
        review = wizard.review_page
        assert wizard.currentPage() is review and review.grid.count() == 15
        review.grid.item(0).setCheckState(Qt.CheckState.Unchecked)
        assert len(review.accepted_indices()) == 14
        with qtbot.waitSignal(wizard.enrolled, timeout=60_000) as enrolled:
            click_next()
        assert enrolled.args[0] == name
        qtbot.waitUntil(wizard.save_page.isComplete, timeout=10_000)
        assert store.get(name).photo_count == 14
        assert "the door names them now" in wizard.save_page.status.text()
        qtbot.mouseClick(
            wizard.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton
        )
        assert not wizard.isVisible()

    assert sorted(p.name for p in store.people()) == sorted(VOLUNTEERS.values())
    gallery = rebuild_gallery(store, embedder)  # from the cache the wizard filled
    assert len(gallery.people) == 3
    for video, name in VOLUNTEERS.items():  # a late frame of each video is recognized
        capture = cv2.VideoCapture(str(shared("videos", video)))
        capture.set(cv2.CAP_PROP_POS_FRAMES, capture.get(cv2.CAP_PROP_FRAME_COUNT) - 5)
        ok, frame = capture.read()
        assert ok
        [face] = detector320.detect(frame)
        [prediction] = gallery.predict([resize_crop(align_face(frame, face.kps, CLIP_SIZE))])
        assert prediction.name == name
    store.close()


@pytest.mark.slow
def test_enroll_command_benchmark_writes_step_timings(  # type: ignore[no-untyped-def]
    qapp, tmp_path: Path, shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from kiosk.cli import main

    video = shared("videos", "solo_07.mp4")
    report = tmp_path / "report.json"
    argv = ["enroll", "--source", str(video), "--store", str(tmp_path / "store")]
    assert main([*argv, "--auto", "Zoë", "--report", str(report)]) == 0
    timings = json.loads(report.read_text(encoding="utf-8"))
    assert timings["photos_saved"] == 30
    assert set(timings["steps_s"]) == {
        "load_models_s",
        "consent_s",
        "name_s",
        "capture_s",
        "review_s",
        "save_and_train_s",
    }
    with PeopleStore(tmp_path / "store") as store:
        assert store.get("Zoë").photo_count == 30
    capsys.readouterr()
    assert main(["enroll", "--source", "7", "--store", str(tmp_path / "store")]) == 2
    assert "camera 7 cannot be opened" in capsys.readouterr().err


def test_an_automatic_enrollment_that_cannot_finish_names_the_gate(  # type: ignore[no-untyped-def]
    qapp, tmp_path: Path, shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """solo_01 (78 frames) cannot give 25 photos: the error says which gate held most
    frames, with its last measurement, and the report counts the frames of each gate."""
    import json

    from kiosk.cli import main

    config = tmp_path / "kiosk.toml"
    config.write_text("[enroll]\nphotos = 30\nmin_photos = 25\n")
    report = tmp_path / "report.json"
    argv = ["--config", str(config), "enroll", "--source", str(shared("videos", "solo_01.mp4"))]
    argv += ["--store", str(tmp_path / "store"), "--auto", "Ada", "--report", str(report)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kiosk: error: the automatic enrollment did not finish: ")
    assert " frames held by the " in err and " gate (last: " in err and "[enroll] " in err
    held = json.loads(report.read_text(encoding="utf-8"))["capture"]
    assert held["photos_taken"] < 25 and sum(held["frames_held_by_gate"].values()) > 0
    assert held["held_most_by"] in err


def test_wizard_keeps_the_photos_when_the_disk_is_full(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, shared: Callable[..., Path], model_dir: Path, detector320, monkeypatch
) -> None:
    import errno

    from enroll import store as store_module
    from models.embedder import ArcFaceEmbedder
    from models.registry import model_path

    embedder = ArcFaceEmbedder(model_path("mobilefacenet_128d", model_dir))
    config = EnrollConfig(photos=5, min_photos=5, poses=("front",))
    with PeopleStore(tmp_path / "store") as store:
        reader = video_reader(shared("videos", "solo_02.mp4"))
        update = GalleryRefresh(store, embedder, threshold=0.5)
        wizard = EnrollWizard(store, config, reader, detector320, update)
        to_capture(qtbot, wizard, "Ada")
        qtbot.waitUntil(lambda: wizard.capture_page.session.done, timeout=60_000)
        wizard.next()
        real_write = store_module._write_file

        def full_disk(path: Path, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store_module, "_write_file", full_disk)
        wizard.next()
        save = wizard.save_page
        qtbot.waitUntil(lambda: save.retry.isVisibleTo(wizard), timeout=10_000)
        assert "disk is full" in save.status.text() and not save.isComplete()
        assert store.people() == [] and len(wizard.capture_page.session.photos) == 5
        monkeypatch.setattr(store_module, "_write_file", real_write)  # space freed
        with qtbot.waitSignal(wizard.enrolled, timeout=30_000):
            qtbot.mouseClick(save.retry, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(save.isComplete, timeout=10_000)
        assert store.get("Ada").photo_count == 5
        wizard.accept()


@pytest.mark.slow
def test_enroll_in_a_real_window_under_xvfb(tmp_path: Path, shared: Callable[..., Path]) -> None:
    import json
    import shutil
    import subprocess
    import sys

    if shutil.which("xvfb-run") is None:
        skip_or_fail("xvfb-run is not installed (packaging/install.sh installs Xvfb)")
    video = shared("videos", "solo_07.mp4")
    report = tmp_path / "report.json"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    command = [sys.executable, "-m", "kiosk", "enroll", "--source", str(video)]
    command += ["--store", str(tmp_path / "store"), "--auto", "Xavier", "--report", str(report)]
    done = subprocess.run(
        ["xvfb-run", "-a", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(report.read_text(encoding="utf-8"))["photos_saved"] == 30


def test_a_video_that_ends_during_capture_says_so(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, shared: Callable[..., Path], detector320
) -> None:
    """solo_01 has 78 frames, too few for 30 photos: the guidance says the video has ended
    and what the photos taken allow, never "camera lost: reconnecting"."""
    from kiosk.live.sources import VideoFileSource
    from kiosk.ui.enrollment import frame_reader

    source = VideoFileSource(shared("videos", "solo_01.mp4"))
    store = PeopleStore(tmp_path / "store")
    wizard = EnrollWizard(
        store, EnrollConfig(), lambda: frame_reader(source), detector320, lambda *_: ""
    )
    to_capture(qtbot, wizard, "Ada")
    page = wizard.capture_page
    qtbot.waitUntil(lambda: "has ended" in page.guidance.text(), timeout=20_000)
    said = page.guidance.text()
    assert said.startswith("video solo_01.mp4 has ended; the ")
    taken = len(page.session.photos)
    enough = "press Next to review them" if taken >= 10 else f"{10 - taken} more are needed"
    kept = "the 1 photo taken is" if taken == 1 else f"the {taken} photos taken are"
    assert f"{kept} kept, {enough}" in said
    if taken < 10:  # and which gate held the capture back most
        assert f"; {page.session.blocking()}" in said and " frames held by the " in said
    assert "camera lost" not in said and page.session.camera_losses == 0
    wizard.reject()
    source.close()
    store.close()


def test_the_operator_reads_which_gate_holds_the_photo_back() -> None:
    from enroll.session import CaptureEvent
    from kiosk.ui.wizard import gate_text

    session = CaptureSession(EnrollConfig())
    event = CaptureEvent(
        "waiting",
        "look straight at the camera",
        "front",
        session.progress(),
        gate="pose",
        detail=f"yaw -12°; {session.pose_needs('front')}",
    )
    assert gate_text(event) == (
        "Held by the head pose gate: yaw -12°; the front pose needs |yaw| < 8° and "
        "|pitch| < 4° ([enroll] front_yaw_deg, front_pitch_deg)"
    )
    assert gate_text(CaptureEvent("captured", "got it", "left", session.progress())) == ""


def test_the_consent_text_promises_what_an_erasure_does() -> None:
    """Each promise of the withdrawal paragraph is something kiosk/erasure.py does."""
    from kiosk.ui.wizard import CONSENT_TEXT, SHREDDED_TEXT

    text = " ".join(CONSENT_TEXT.split())
    for promise in (
        "its exports, its caches and the recognizer's training",  # _exports, _caches, _bundle
        "an export on a drive that is not plugged in, the next time",  # a pending erasure
        "in the report files it wrote of them, your name is replaced by an anonymous label",
        "cannot be made again without your name is deleted",
        "Copies someone made by hand, outside the kiosk, are beyond its reach",
    ):
        assert promise in text, promise
    assert "leaving no copy" not in text and "any copy left anywhere" not in SHREDDED_TEXT


def test_the_consent_text_names_where_data_is_sent() -> None:
    """A single kiosk sends nothing; a site and a door hook are named, and so is what an
    erasure does and does not reach there."""
    from enroll.config import EnrollConfig
    from kiosk.config import KioskConfig
    from kiosk.ui.wizard import Disclosure

    def text(**sections: object) -> str:
        disclosure = Disclosure.of(KioskConfig.model_validate(sections))
        return " ".join(disclosure.text(EnrollConfig(), encrypted=False).split())

    alone = text(events={"retention_days": 7})
    assert "kept 7 days" in alone and "Nothing is sent anywhere else" in alone
    for elsewhere in ("registry", "sent to", "on the site", "Every kiosk of the site"):
        assert elsewhere not in alone
    assert "kept 7 days" not in text(events={"enabled": False})

    site = text(site={"host": "db.example.org", "dbname": "kiosk", "user": "door1"})
    assert "through the site's registry (db.example.org)" in site
    assert "test results on this kiosk and on the site" in site
    assert "Every kiosk of the site deletes them too" in site
    local = text(site={"user": "door1"})  # libpq's default: a Unix socket here
    assert "through the site's registry (on this computer)" in local

    hooked = text(events={"url": "https://hooks.example.org/door?token=secret"})
    assert "your name and the time are also sent to hooks.example.org" in hooked
    assert "and so is what was sent to hooks.example.org" in hooked
    assert "secret" not in hooked  # the host, never the URL's path or query
    program = text(events={"command": ["notify", "--x"]})
    assert "also sent to a program the operator set up" in program and "notify" not in program
    assert "sent to" not in text(events={"enabled": False, "url": "https://h.example.org"})
