"""Building the configured recognizer, and hot reload's failure handling."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.build import folder_gallery
from kiosk.live.holder import NobodyEnrolled, RecognizerHolder, path_signature
from models.detector import FaceDetector
from models.embedder import ArcFaceEmbedder
from models.recognition import Recognizer
from tests.helpers import BOMB_REASON, png_header_only


def test_gallery_skips_photos_without_a_usable_face(
    shared: Callable[..., Path], model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    detector = FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)
    (tmp_path / "newton").mkdir()
    (tmp_path / "blank").mkdir()
    newton = cv2.imread(str(shared("faces", "portraits", "newton.png")))
    cv2.imwrite(str(tmp_path / "newton" / "a.png"), newton)
    (tmp_path / "newton" / "broken.jpg").write_bytes(b"no image")
    (tmp_path / "newton" / "bomb.png").write_bytes(png_header_only(30_000, 30_000))
    cv2.imwrite(str(tmp_path / "blank" / "a.png"), np.zeros((200, 200, 3), np.uint8))
    embedder = ArcFaceEmbedder(model_dir / "mobilefacenet_128d.onnx")
    with caplog.at_level(logging.WARNING, logger="kiosk.build"):
        gallery = folder_gallery(tmp_path, detector, embedder, threshold=0.5)
    assert list(gallery.people) == ["newton"]  # built from the photos that are left
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert re.search(r"skipped \S+/newton/bomb\.png: bomb\.png is (" + BOMB_REASON + ")", logged)
    assert re.search(r"skipped \S+/newton/broken\.jpg: broken\.jpg is not an image", logged)
    assert re.search(r"skipped \S+/blank/a\.png: no face found", logged)
    assert gallery.providers == ["CPUExecutionProvider"]  # type: ignore[attr-defined]
    face = detector.detect(newton, mode="largest")[0]
    (prediction,) = gallery.predict([gallery.align(newton, face)])
    assert prediction.name == "newton" and prediction.confidence > 0.9
    empty = folder_gallery(tmp_path / "absent", detector, embedder, threshold=0.5)
    assert isinstance(empty, NobodyEnrolled) and list(empty.people) == []


def test_failed_reload_keeps_the_previous_recognizer(tmp_path: Path) -> None:
    bundle = tmp_path / "recognizer.bundle"
    bundle.write_bytes(b"v1")
    first = NobodyEnrolled()
    builds: list[int] = []

    def factory() -> Recognizer:
        builds.append(1)
        if len(builds) == 1:
            raise ValueError("truncated bundle")
        return NobodyEnrolled()

    holder = RecognizerHolder(factory, bundle, initial=first)
    assert not holder.reload_if_changed()  # nothing changed: nothing built
    assert builds == []
    time.sleep(0.01)
    bundle.write_bytes(b"v2 but half written")
    assert not holder.reload_if_changed()
    assert holder.current() is first and "truncated bundle" in holder.last_error
    bundle.write_bytes(b"v3, complete")
    assert holder.reload_if_changed()
    assert holder.current() is not first and holder.version == 2 and holder.last_error == ""


def test_a_failed_build_is_retried_with_backoff_until_it_succeeds(tmp_path: Path) -> None:
    """The change counts as seen only after a successful build (a reload that raced an
    enrollment used to mark the store seen first, fail, and stay stale for good)."""
    bundle = tmp_path / "recognizer.bundle"
    bundle.write_bytes(b"v1")
    failures = [ValueError("UNIQUE constraint failed"), OSError("busy")]
    built: list[float] = []

    def factory() -> Recognizer:
        built.append(time.monotonic())
        if failures:
            raise failures.pop(0)
        return NobodyEnrolled()

    holder = RecognizerHolder(factory, bundle, poll_s=0.05, initial=NobodyEnrolled())
    bundle.write_bytes(b"v2")
    assert not holder.reload_if_changed()  # fails; the next try waits 0.05 s
    assert not holder.reload_if_changed() and len(built) == 1  # too soon: not tried
    time.sleep(0.06)
    assert not holder.reload_if_changed() and len(built) == 2  # tried, failed: now 0.1 s
    assert "next try in" in holder.last_error
    time.sleep(0.11)
    assert holder.reload_if_changed() and len(built) == 3  # the same state, at last
    assert holder.version == 2 and holder.last_error == ""
    assert not holder.reload_if_changed()  # seen now: nothing to do


def test_path_signature_sees_files_added_under_a_folder(tmp_path: Path) -> None:
    assert path_signature(tmp_path / "absent") == ()
    before = path_signature(tmp_path)
    (tmp_path / "ada").mkdir()
    (tmp_path / "ada" / "1.png").write_bytes(b"x")
    assert path_signature(tmp_path) != before
