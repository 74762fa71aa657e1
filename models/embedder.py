"""Face embedders for the zero-shot gallery: the protocol, and ArcFace-style ONNX models
(MobileFaceNet, insightface's w600k_r50, ...). CLIP's image tower is the other kind
(models/clip_classifier.py's ``ClipFaceEmbedder``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from models.align import ARCFACE_SIZE, align_arcface
from models.detector import Face
from models.runtime import create_session


class FaceEmbedder(Protocol):
    """What an embedding gallery needs of its embedder."""

    crop_size: int  # side of its crops; all are aligned to the ArcFace template, scaled
    dim: int
    key: str  # names the model in caches of embeddings (the people store's)

    @property
    def providers(self) -> list[str]: ...

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]: ...

    def embed(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]: ...


def arcface_blob(crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """BGR 112x112 crops -> the (N, 3, 112, 112) input of an ArcFace-style model."""
    batch = np.stack(crops).astype(np.float32)
    if batch.shape[1:] != (ARCFACE_SIZE, ARCFACE_SIZE, 3):
        raise ValueError(f"expected 112x112 BGR crops, got {batch.shape[1:]}")
    blob = (batch[..., ::-1] - 127.5) / 128.0  # BGR -> RGB, then normalise
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


class ArcFaceEmbedder:
    """Embeds faces aligned to the ArcFace 112 template; RGB, (x - 127.5) / 128, L2-normed."""

    crop_size = ARCFACE_SIZE

    def __init__(self, model_path: Path, *, device: str = "auto", threads: int = 0) -> None:
        self.model_path = model_path
        self.key = model_path.stem
        self._session = create_session(model_path, device=device, threads=threads)
        self._input = self._session.get_inputs()[0].name
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return align_arcface(image, face.kps)

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], batch_size: int = 64
    ) -> NDArray[np.float32]:
        """L2-normalised embeddings of BGR 112x112 crops, shape (N, dim)."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(crops), batch_size):
            blob = arcface_blob(crops[start : start + batch_size])
            out.append(self._session.run(None, {self._input: blob})[0])
        embeddings = np.concatenate(out).astype(np.float32)
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
