"""What every recognizer (CLIP classifier, embedding gallery) offers the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from models.detector import Face, FaceDetector

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Prediction:
    """One face's answer. ``name`` is None when the best score is below the threshold."""

    name: str | None
    best: str  # the best-scoring person, even when rejected
    confidence: float  # the score that was compared with the threshold

    @property
    def label(self) -> str:
        return self.name if self.name is not None else UNKNOWN


class Recognizer(Protocol):
    """Names aligned faces. ``align`` turns a detected face into the crop ``predict`` takes."""

    @property
    def people(self) -> Sequence[str]: ...

    @property
    def threshold(self) -> float: ...

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]: ...

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]: ...


@dataclass(frozen=True)
class RecognizedFace:
    face: Face
    prediction: Prediction


def recognize_image(
    detector: FaceDetector, recognizer: Recognizer, image: NDArray[np.uint8], mode: str = "all"
) -> list[RecognizedFace]:
    """Detect, align and name every face (or the largest) in a BGR image."""
    faces = detector.detect(image, mode="largest" if mode == "largest" else "all")
    if not faces:
        return []
    crops = [recognizer.align(image, face) for face in faces]
    predictions = recognizer.predict(crops)
    return [RecognizedFace(f, p) for f, p in zip(faces, predictions, strict=True)]


def decide(scores: NDArray[np.floating], people: Sequence[str], threshold: float) -> Prediction:
    """The best person if their score reaches ``threshold``, else a rejection."""
    best = int(np.argmax(scores))
    confidence = float(scores[best])
    name = people[best] if confidence >= threshold else None
    return Prediction(name=name, best=people[best], confidence=confidence)
