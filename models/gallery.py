"""Recognition from a gallery of enrolled photos' embeddings: no training at all.

Each person's score is the best cosine similarity between the query and their photos;
the best person is accepted when that reaches the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from models.detector import Face
from models.embedder import FaceEmbedder
from models.recognition import Prediction, decide


class EmbeddingGallery:
    """A recognizer over (embedding, person) pairs from one embedder."""

    def __init__(
        self,
        embedder: FaceEmbedder,
        embeddings: NDArray[np.float32],
        labels: Sequence[str],
        threshold: float = 0.5,
    ) -> None:
        if len(embeddings) != len(labels):
            raise ValueError("one label per embedding is needed")
        self.embedder = embedder
        self._threshold = threshold
        self._people = sorted(set(labels))
        index = {name: i for i, name in enumerate(self._people)}
        self._label_ids = np.array([index[name] for name in labels], dtype=np.int64)
        self._embeddings = np.asarray(embeddings, dtype=np.float32)

    @classmethod
    def from_crops(
        cls,
        embedder: FaceEmbedder,
        crops_by_person: dict[str, Sequence[NDArray[np.uint8]]],
        threshold: float = 0.5,
    ) -> EmbeddingGallery:
        labels = [name for name, crops in crops_by_person.items() for _ in crops]
        crops = [crop for person_crops in crops_by_person.values() for crop in person_crops]
        return cls(embedder, embedder.embed(crops), labels, threshold)

    @property
    def people(self) -> Sequence[str]:
        return self._people

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def providers(self) -> list[str]:
        return self.embedder.providers

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return self.embedder.align(image, face)

    def person_scores(self, queries: NDArray[np.float32]) -> NDArray[np.float32]:
        """(N, people) best cosine similarity of each query to each person's photos."""
        sims = queries @ self._embeddings.T
        scores = np.full((len(queries), len(self._people)), -1.0, dtype=np.float32)
        for person in range(len(self._people)):
            columns = self._label_ids == person
            scores[:, person] = sims[:, columns].max(axis=1)
        return scores

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        if not self._people:
            raise ValueError("the gallery is empty: enroll someone first")
        scores = self.person_scores(self.embedder.embed(crops))
        return [decide(row, self._people, self._threshold) for row in scores]
