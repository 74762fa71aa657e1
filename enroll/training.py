"""Turn the store into a recognizer: the embedding gallery, of MobileFaceNet or of CLIP's
image tower (``[recognizer] embedder``).

Embeddings are cached in the store (encrypted with it) under the embedder's key, so a
rebuild after enrolling one more person only embeds that person's photos.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from enroll.store import PeopleStore
from models.align import ARCFACE_SIZE
from models.embedder import FaceEmbedder
from models.gallery import EmbeddingGallery

ProgressCallback = Callable[[int, int], None]  # (people done, people in all)


class TrainingCancelled(Exception):
    """The operator cancelled the rebuild; the previous recognizer stays in use."""


def crop_at(crop: NDArray[np.uint8], size: int = ARCFACE_SIZE) -> NDArray[np.uint8]:
    """A stored 224 crop (ArcFace template) at an embedder's input size (ArcFace's 112)."""
    if crop.shape[0] == size:
        return crop
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.uint8)


def rebuild_gallery(
    store: PeopleStore,
    embedder: FaceEmbedder,
    *,
    threshold: float = 0.5,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> EmbeddingGallery:
    """An embedding gallery of everyone in the store, person by person (cancellable)."""

    def embed(crops: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        return embedder.embed([crop_at(crop, embedder.crop_size) for crop in crops])

    people = store.people()
    vectors = [np.zeros((0, embedder.dim), dtype=np.float32)]
    labels: list[str] = []
    for done, person in enumerate(people):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled
        person_vectors, person_labels = store.embeddings(embedder.key, embed, names=[person.name])
        if person_labels:
            vectors.append(person_vectors)
            labels.extend(person_labels)
        if progress is not None:
            progress(done + 1, len(people))
    return EmbeddingGallery(embedder, np.concatenate(vectors), labels, threshold)
