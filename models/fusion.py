"""CLIP confirmed by an embedding gallery: a name is given only when both agree.

CLIP's finetuned classifier answers among the enrolled people, so a stranger still gets
someone's name with a high softmax when that person is the nearest prompt. An embedder
trained for faces (MobileFaceNet) measures how close the face is to that person's own
photos. The fusion accepts CLIP's answer only when the gallery's best cosine *for the
same person* reaches the gallery's threshold; otherwise the face is unknown. Its
confidence is CLIP's (the score compared with CLIP's threshold).

Both see the same crop: the people store's 224 px crops, and the live faces, are aligned
to the ArcFace template, which CLIP takes at 224 and the gallery's embedder resized.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from models.align import resize_crop
from models.clip.classifier import ClipRecognizer
from models.detector import Face
from models.gallery import EmbeddingGallery
from models.recognition import Prediction


class FusionRecognizer:
    """A :class:`models.recognition.PeopleRecognizer`: CLIP's name if the gallery agrees."""

    kind = "fusion"

    def __init__(self, clip: ClipRecognizer, gallery: EmbeddingGallery) -> None:
        self.clip = clip
        self.gallery = gallery

    @property
    def people(self) -> Sequence[str]:
        return self.clip.people

    @property
    def person_ids(self) -> Sequence[str]:
        return self.clip.person_ids

    @property
    def version(self) -> int:
        return self.clip.version

    @property
    def threshold(self) -> float:
        return self.clip.threshold

    @property
    def providers(self) -> list[str]:
        return list(dict.fromkeys([*self.clip.providers, *self.gallery.providers]))

    def without(self, person_ids: set[str]) -> FusionRecognizer:
        return FusionRecognizer(self.clip.without(person_ids), self.gallery.without(person_ids))

    def renamed(self, names: dict[str, str]) -> FusionRecognizer:
        return FusionRecognizer(self.clip.renamed(names), self.gallery.renamed(names))

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return self.clip.align(image, face)

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        if not crops:
            return []
        answers = self.clip.predict(crops)
        size = self.gallery.embedder.crop_size
        embedded = self.gallery.embedder.embed([resize_crop(crop, size) for crop in crops])
        cosines = self.gallery.person_scores(embedded)
        column = {key: i for i, key in enumerate(self.gallery.person_ids)}
        fused = []
        for answer, row in zip(answers, cosines, strict=True):
            index = column.get(answer.person_id or "")
            agrees = index is not None and float(row[index]) >= self.gallery.threshold
            fused.append(
                answer
                if agrees or answer.name is None
                else Prediction(
                    name=None,
                    best=answer.best,
                    confidence=answer.confidence,
                    person_id=answer.person_id,
                )
            )
        return fused
