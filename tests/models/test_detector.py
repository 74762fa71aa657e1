from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.align import (
    ARCFACE_TEMPLATE,
    align_arcface,
    align_for_clip,
    similarity_matrix,
    template,
)
from models.detector import FaceDetector
from models.errors import ModelError

SharedPath = Callable[..., Path]


@pytest.mark.parametrize(("name", "count"), [("newton.png", 1), ("gauss.png", 1)])
def test_single_portraits(
    detector: FaceDetector, shared: SharedPath, name: str, count: int
) -> None:
    image = cv2.imread(str(shared("faces", "portraits", name)))
    faces = detector.detect(image)
    assert len(faces) == count
    assert faces[0].kps.shape == (5, 2)


def test_newton_box(detector: FaceDetector, shared: SharedPath) -> None:
    image = cv2.imread(str(shared("faces", "portraits", "newton.png")))
    face = detector.detect(image)[0]
    np.testing.assert_allclose(face.box, [334, 89, 438, 232], atol=6)
    assert 0.75 < face.score < 0.9


def test_solvay_group(detector: FaceDetector, shared: SharedPath) -> None:
    image = cv2.imread(str(shared("faces", "portraits", "solvay_conference_1927.jpg")))
    faces = detector.detect(image)
    assert abs(len(faces) - 29) <= 1
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True)
    largest = detector.detect(image, mode="largest")
    assert len(largest) == 1
    np.testing.assert_array_equal(largest[0].box, faces[0].box)


def test_providers_are_reported(detector: FaceDetector) -> None:
    assert detector.providers and detector.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("name", ["scrfd_2.5g", "scrfd_0.5g"])
def test_variants_find_newton(model_dir: Path, shared: SharedPath, name: str) -> None:
    image = cv2.imread(str(shared("faces", "portraits", "newton.png")))
    assert len(FaceDetector.from_name(name, model_dir).detect(image)) == 1


def test_unknown_detector_name(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown detector"):
        FaceDetector.from_name("yolo", model_dir)


def test_alignment_puts_keypoints_on_template(detector: FaceDetector, shared: SharedPath) -> None:
    image = cv2.imread(str(shared("faces", "portraits", "gauss.png")))
    face = detector.detect(image)[0]
    crop = align_for_clip(image, face.kps)
    assert crop.shape == (224, 224, 3)
    assert align_arcface(image, face.kps).shape == (112, 112, 3)
    matrix = similarity_matrix(face.kps, template(224))
    moved = np.c_[face.kps, np.ones(5)] @ matrix.T
    # Five points, four degrees of freedom: a real face fits the template within a few px.
    assert np.abs(moved - template(224)).max() < 12


def test_alignment_is_exact_for_a_similar_face() -> None:
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([40.0, 15.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    kps = ARCFACE_TEMPLATE @ rotation.T + shift
    matrix = similarity_matrix(kps, template(112))
    np.testing.assert_allclose(np.c_[kps, np.ones(5)] @ matrix.T, ARCFACE_TEMPLATE, atol=1e-3)


def test_margin_zooms_out() -> None:
    tight, loose = template(224), template(224, margin=0.3)
    assert np.ptp(loose[:, 0]) < np.ptp(tight[:, 0])
    with pytest.raises(ValueError):
        template(224, margin=1.5)
