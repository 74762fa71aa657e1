"""CLIP's frozen image tower as the embedder of a zero-shot gallery (no training)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from models import registry
from models.align import CLIP_SIZE, align_for_clip
from models.detector import Face
from models.errors import ModelError

if TYPE_CHECKING:
    pass
from models.clip.identity import OPENAI_WEIGHTS, Pretrained, warn_untrained
from models.clip.towers import (
    ImageTower,
    OnnxImageTower,
    build_clip,
    encode_crops,
    export_image_tower,
    normalise_rows,
)


class ClipFaceEmbedder:
    """CLIP's frozen image tower as the embedder of a zero-shot gallery (no training):
    faces aligned to 224 with the ArcFace template, as the people store keeps them;
    features L2-normalised."""

    crop_size = CLIP_SIZE

    def __init__(self, tower: ImageTower, key: str) -> None:
        self.tower = tower
        self.key = key
        self.dim = tower.dim

    @classmethod
    def load(
        cls,
        model_name: str,
        pretrained: Pretrained,
        model_dir: Path | None,
        cache_dir: Path,
        *,
        device: str = "auto",
        threads: int = 0,
    ) -> ClipFaceEmbedder:
        """The ONNX image tower, exported once (with torch) into ``cache_dir``; after that
        neither torch nor the weights file is needed.

        The cached file is named by the weights' sha256 (openai) or by the model and
        seed (an untrained tower, for tests and timings only)."""
        path = cls.tower_path(model_name, pretrained, cache_dir)
        if pretrained == "none":
            warn_untrained()
        if not path.is_file():
            model, _ = build_clip(model_name, pretrained, model_dir)
            export_image_tower(model.visual, path)
        key = f"clip:{model_name}:{pretrained}:{cls._version(model_name, pretrained)}"
        return cls(OnnxImageTower(path, device=device, threads=threads), key)

    @staticmethod
    def _version(model_name: str, pretrained: Pretrained) -> str:
        if pretrained == "none":
            return "seed0"  # build_clip's default init_seed
        if model_name != "RN50":
            raise ModelError(f"no openai weights for {model_name}: use RN50")
        return registry.spec(OPENAI_WEIGHTS).sha256[:16]

    @classmethod
    def tower_path(cls, model_name: str, pretrained: Pretrained, cache_dir: Path) -> Path:
        version = cls._version(model_name, pretrained)
        return cache_dir / f"clip-{model_name}-{pretrained}-{version}.onnx"

    @property
    def providers(self) -> list[str]:
        return self.tower.providers

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return align_for_clip(image, face.kps)

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], batch_size: int = 32
    ) -> NDArray[np.float32]:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise_rows(encode_crops(self.tower, crops, batch_size=batch_size))
