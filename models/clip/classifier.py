"""CLIP RN50 as a face classifier: frozen image tower, per-person text embeddings.

Recognition runs the image tower alone (torch, or its ONNX export over onnxruntime), then
centres the features with the training mean stored in the bundle, normalises them and
compares them with the precomputed per-person text embeddings; the softmax over people
is compared with the reject threshold.

torch and open_clip are imported only when a model is built, so importing this module
is cheap; the ONNX backend needs neither once the tower has been exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from models.align import align_for_clip
from models.detector import Face
from models.recognition import Prediction, decide

if TYPE_CHECKING:
    from models.clip.bundle import RecognizerBundle
from models.clip.identity import ClipIdentity, warn_untrained
from models.clip.towers import (
    Backend,
    ImageTower,
    OnnxImageTower,
    TorchImageTower,
    encode_crops,
    export_image_tower,
    normalise_rows,
    rebuild_image_tower,
)


def class_probabilities(
    features: NDArray[np.float32],
    feature_mean: NDArray[np.float32],
    text_embeddings: NDArray[np.float32],
    logit_scale: float,
) -> NDArray[np.float32]:
    """Softmax over people of the centred, normalised image features (N, people)."""
    image = normalise_rows(features - feature_mean)
    logits = logit_scale * image @ text_embeddings.T
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


class ClipRecognizer:
    """A :class:`models.recognition.Recognizer` over a trained bundle."""

    def __init__(
        self, bundle: RecognizerBundle, tower: ImageTower, threshold: float | None = None
    ) -> None:
        self.bundle = bundle
        self.tower = tower
        self._threshold = bundle.settings.threshold if threshold is None else threshold
        self.text_embeddings = normalise_rows(bundle.text_embeddings)

    @classmethod
    def load(
        cls,
        bundle_path: Path,
        model_dir: Path | None,
        backend: Backend = "onnx",
        threshold: float | None = None,
        device: str = "auto",
        threads: int = 0,
    ) -> ClipRecognizer:
        """Load a bundle with its image tower; the ONNX tower is exported once and cached
        next to the bundle, after which recognition needs no torch."""
        from models.clip.bundle import load_bundle

        bundle = load_bundle(bundle_path)
        if bundle.identity.pretrained == "none":
            warn_untrained()
        tower: ImageTower
        onnx_path = onnx_tower_path(bundle_path, bundle.identity)
        if backend == "onnx" and onnx_path.is_file():
            tower = OnnxImageTower(onnx_path, device=device, threads=threads)
        else:
            visual = rebuild_image_tower(bundle.identity, model_dir)
            if backend == "onnx":
                export_image_tower(visual, onnx_path)
                tower = OnnxImageTower(onnx_path, device=device, threads=threads)
            else:
                tower = TorchImageTower(visual)
        return cls(bundle, tower, threshold)

    @property
    def people(self) -> Sequence[str]:
        return self.bundle.people

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def providers(self) -> list[str]:
        return self.tower.providers

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return align_for_clip(image, face.kps, self.bundle.settings.align_margin)

    def probabilities(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        features = encode_crops(self.tower, crops)
        return class_probabilities(
            features, self.bundle.feature_mean, self.text_embeddings, self.bundle.logit_scale
        )

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        if not crops:
            return []
        probs = self.probabilities(crops)
        return [decide(row, self.bundle.people, self._threshold) for row in probs]


def onnx_tower_path(bundle_path: Path, identity: ClipIdentity) -> Path:
    return bundle_path.with_name(f"{bundle_path.name}.tower-{identity.key}.onnx")
