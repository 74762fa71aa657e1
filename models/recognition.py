"""What every recognizer (CLIP classifier, embedding gallery) offers the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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
    person_id: str | None = None  # the best person's key (the store's opaque id), if known

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


@runtime_checkable
class PeopleRecognizer(Recognizer, Protocol):
    """A recognizer that knows its people by key and can drop or rename them at once:
    an erasure takes effect on the next frame, before any rebuild or retrain."""

    @property
    def person_ids(self) -> Sequence[str]: ...

    def without(self, person_ids: set[str]) -> PeopleRecognizer: ...

    def renamed(self, names: dict[str, str]) -> PeopleRecognizer: ...


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


def decide(
    scores: NDArray[np.floating],
    people: Sequence[str],
    threshold: float,
    person_ids: Sequence[str] | None = None,
) -> Prediction:
    """The best person if their score reaches ``threshold``, else a rejection."""
    best = int(np.argmax(scores))
    confidence = float(scores[best])
    name = people[best] if confidence >= threshold else None
    key = person_ids[best] if person_ids is not None else None
    return Prediction(name=name, best=people[best], confidence=confidence, person_id=key)
