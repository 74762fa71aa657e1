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
    """A recognizer over (embedding, person) pairs from one embedder.

    ``labels`` are person keys (the people store's opaque ids, or names); ``names`` maps
    keys to the names shown (default: the keys themselves).
    """

    kind = "embedding_gallery"

    def __init__(
        self,
        embedder: FaceEmbedder,
        embeddings: NDArray[np.float32],
        labels: Sequence[str],
        threshold: float = 0.5,
        names: dict[str, str] | None = None,
    ) -> None:
        if len(embeddings) != len(labels):
            raise ValueError("one label per embedding is needed")
        self.embedder = embedder
        self._threshold = threshold
        self._labels = list(labels)
        self._names = dict(names or {})
        self._keys = sorted(set(labels))
        self._people = [self._names.get(key, key) for key in self._keys]
        index = {key: i for i, key in enumerate(self._keys)}
        self._label_ids = np.array([index[key] for key in labels], dtype=np.int64)
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
    def person_ids(self) -> Sequence[str]:
        return self._keys

    def without(self, person_ids: set[str]) -> EmbeddingGallery:
        keep = [i for i, key in enumerate(self._labels) if key not in person_ids]
        return EmbeddingGallery(
            self.embedder,
            self._embeddings[keep],
            [self._labels[i] for i in keep],
            self._threshold,
            {k: v for k, v in self._names.items() if k not in person_ids},
        )

    def renamed(self, names: dict[str, str]) -> EmbeddingGallery:
        shown = {key: names.get(key, self._names.get(key, key)) for key in self._keys}
        return EmbeddingGallery(
            self.embedder, self._embeddings, self._labels, self._threshold, shown
        )

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
        return [decide(row, self._people, self._threshold, self._keys) for row in scores]
