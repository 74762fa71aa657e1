"""Turn the store into a recognizer: the embedding gallery, of MobileFaceNet or of CLIP's
image tower (``[recognizer] embedder``).

Embeddings are cached in the store (encrypted with it) under the embedder's key, so a
rebuild after enrolling one more person only embeds that person's photos.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from enroll.store import PeopleStore
from models.align import resize_crop
from models.embedder import FaceEmbedder
from models.gallery import EmbeddingGallery

ProgressCallback = Callable[[int, int], None]  # (people done, people in all)


class TrainingCancelled(Exception):
    """The operator cancelled the rebuild; the previous recognizer stays in use."""


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
        return embedder.embed([resize_crop(crop, embedder.crop_size) for crop in crops])

    people = store.people()
    vectors = [np.zeros((0, embedder.dim), dtype=np.float32)]
    labels: list[str] = []
    for done, person in enumerate(people):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled
        found = store.embeddings_by_person(embedder.key, embed, uids=[person.uid])
        if person.uid in found:
            vectors.append(found[person.uid])
            labels.extend([person.uid] * len(found[person.uid]))
        if progress is not None:
            progress(done + 1, len(people))
    names = {person.uid: person.name for person in people}
    return EmbeddingGallery(embedder, np.concatenate(vectors), labels, threshold, names)
