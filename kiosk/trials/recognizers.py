"""The recognizers a simulation runs, each built from the enrollment photos.

A factory takes each person's enrollment photos (the wizard's 224 px crops on the
ArcFace template) and a version number, and builds a recognizer; the simulation builds
one from everyone and, with leave-one-out, one without each enrolled person.

- :class:`GalleryFactory`: the MobileFaceNet embedding gallery (the crops resized to
  112 px, exactly as the people store's gallery is built).
- :class:`ClipFactory`: the product's CLIP recognizer, trained as the kiosk trains it
  (:func:`models.train.bundle.train_from_features`, the ``[train]`` settings: the 80/20
  split, AdamW, the cosine schedule, batches of 16). The crops are aligned already, so
  their features come straight from the ONNX image tower, once per person: every
  leave-one-out bundle reuses them. The tower remembers the features of the frames it
  has seen (:class:`RememberingTower`), so the held-out reruns over the same frames cost
  a matrix product each.
- :class:`FusionFactory`: CLIP confirmed by the gallery (:class:`models.fusion.FusionRecognizer`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from models.errors import ModelError, UserError
from models.recognition import Recognizer

if TYPE_CHECKING:
    from models.clip.classifier import ClipRecognizer, Rejection
    from models.clip.identity import ClipIdentity
    from models.clip.towers import ImageTower
    from models.embedder import FaceEmbedder
    from models.gallery import EmbeddingGallery
    from models.train.bundle import DetectorInfo
    from models.train.finetune import TrainSettings

Photos = dict[str, list[NDArray[np.uint8]]]  # person -> enrollment crops (224 px)

UNTRAINED = "UNTRAINED"  # in a recognizer's description: its figures mean nothing


class CannotBuild(UserError):
    """These photos cannot make this recognizer (CLIP with fewer than two people)."""


@dataclass(frozen=True)
class Built:
    """A recognizer and what is known about how it was made (JSON-able)."""

    recognizer: Recognizer
    details: dict[str, Any] = field(default_factory=dict)


class RecognizerFactory(Protocol):
    """Builds one kind of recognizer from enrollment photos."""

    @property
    def name(self) -> str:
        """The command line's name: ``gallery``, ``clip`` or ``fusion``."""
        ...

    @property
    def description(self) -> str:
        """What it is, for the session record (:data:`UNTRAINED` when it is)."""
        ...

    @property
    def threshold(self) -> float: ...

    @property
    def untrained(self) -> bool: ...

    def settings(self) -> dict[str, Any]: ...

    def __call__(self, photos: Photos, version: int) -> Built: ...


class GalleryFactory:
    """The MobileFaceNet embedding gallery of the enrollment photos."""

    name = "gallery"
    untrained = False

    def __init__(self, model_path: Path, threshold: float) -> None:
        self.model_path = model_path
        self.threshold = threshold
        self._embedder: FaceEmbedder | None = None

    @property
    def description(self) -> str:
        return f"embedding_gallery MobileFaceNet (cosine threshold {self.threshold:g})"

    def settings(self) -> dict[str, Any]:
        return {"embedder": self.model_path.name, "threshold": self.threshold}

    def gallery(self, photos: Photos) -> EmbeddingGallery:
        from models.align import resize_crop
        from models.embedder import ArcFaceEmbedder
        from models.gallery import EmbeddingGallery

        if self._embedder is None:
            self._embedder = ArcFaceEmbedder(self.model_path)
        crops: dict[str, Sequence[NDArray[np.uint8]]] = {
            name: [resize_crop(crop) for crop in person] for name, person in photos.items()
        }
        return EmbeddingGallery.from_crops(self._embedder, crops, threshold=self.threshold)

    def __call__(self, photos: Photos, version: int) -> Built:
        details = {"version": version, "people": sorted(photos), "photos": _counts(photos)}
        return Built(self.gallery(photos), details)


class RememberingTower:
    """An image tower that remembers the features of every input it has encoded.

    A frozen tower gives the same features for the same crop whatever bundle reads
    them, so a crop seen before costs a lookup. Kept for one simulation (a few MiB per
    thousand frames)."""

    def __init__(self, tower: ImageTower) -> None:
        self.tower = tower
        self._seen: dict[bytes, NDArray[np.float32]] = {}
        self.encoded = 0  # inputs actually run through the tower

    @property
    def providers(self) -> list[str]:
        return self.tower.providers

    @property
    def dim(self) -> int:
        return self.tower.dim

    @property
    def precision(self) -> str:
        return self.tower.precision

    def encode(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in blob]
        missing = [i for i, key in enumerate(keys) if key not in self._seen]
        if missing:
            features = self.tower.encode(np.ascontiguousarray(blob[missing]))
            for i, feature in zip(missing, features, strict=True):
                self._seen[keys[i]] = feature
            self.encoded += len(missing)
        return np.stack([self._seen[key] for key in keys])


class ClipFactory:
    """The finetuned CLIP recognizer, trained on the enrollment photos as the kiosk
    trains it from the people store. ``model`` is the open_clip model (its text tower is
    finetuned, then put back as it was, so every bundle starts from the same weights);
    ``tower`` its frozen image tower (ONNX)."""

    name = "clip"

    def __init__(
        self,
        model: Any,
        identity: ClipIdentity,
        tower: ImageTower,
        settings: TrainSettings,
        detector: DetectorInfo,
        *,
        threshold: float,
        rejection: Rejection = "max_softmax",
    ) -> None:
        self.model = model
        self.identity = identity
        self.tower = RememberingTower(tower)
        self.train_settings = settings
        self.detector = detector
        self.threshold = threshold
        self.rejection: Rejection = rejection
        # The text tower as built: finetuning changes it in place.
        self._pristine = {
            key: value.detach().clone()
            for key, value in model.state_dict().items()
            if not key.startswith("visual.")
        }
        self._features: dict[str, tuple[bytes, NDArray[np.float32]]] = {}
        self.feature_seconds = 0.0

    @property
    def untrained(self) -> bool:
        return self.identity.pretrained == "none"

    @property
    def description(self) -> str:
        what = f"clip {self.identity.model}, pretrained {self.identity.pretrained}"
        return f"{what}: {UNTRAINED}" if self.untrained else what

    def settings(self) -> dict[str, Any]:
        s = self.train_settings
        return {
            "model": self.identity.model,
            "pretrained": self.identity.pretrained,
            "untrained": self.untrained,
            "threshold": self.threshold,
            "rejection": self.rejection,
            "prompt": s.prompt,
            "split": f"{1 - s.test_fraction:.0%}/{s.test_fraction:.0%} per person (seed {s.seed})",
            "optimizer": f"AdamW lr {s.learning_rate:g}, weight decay {s.weight_decay:g}",
            "schedule": "cosine annealing",
            "epochs": s.epochs,
            "batch_size": s.batch_size,
            "trainable_layers": s.trainable_layers,
            "min_images": s.min_images,
            "image_tower": "onnx fp32",
        }

    def features(self, name: str, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """The image features of a person's crops, computed once."""
        from models.clip.towers import encode_crops

        digest = hashlib.sha256(b"".join(crop.tobytes() for crop in crops)).digest()
        known = self._features.get(name)
        if known is None or known[0] != digest:
            started = time.perf_counter()
            known = (digest, encode_crops(self.tower, crops))
            self._features[name] = known
            self.feature_seconds += time.perf_counter() - started
        return known[1]

    def train(self, photos: Photos, version: int) -> tuple[ClipRecognizer, dict[str, Any]]:
        from models.clip.classifier import ClipRecognizer
        from models.train.bundle import train_from_features
        from models.train.features import FaceSet

        features = {name: self.features(name, crops) for name, crops in photos.items()}
        faceset = FaceSet(
            features=features,
            sources={name: [] for name in features},
            images=sum(len(crops) for crops in photos.values()),
        )
        try:
            bundle, report = train_from_features(
                faceset,
                self.model,
                self.identity,
                self.train_settings,
                self.detector,
                threshold=self.threshold,
                source={"kind": "simulation"},
                version=version,
            )
        except ValueError as error:
            raise CannotBuild(f"no CLIP bundle: {error}") from None
        finally:
            self.model.load_state_dict(self._pristine, strict=False)
        try:
            recognizer = ClipRecognizer(
                bundle, self.tower, self.threshold, rejection=self.rejection
            )
        except ModelError as error:
            raise CannotBuild(f"CLIP bundle v{version} cannot be used: {error}") from None
        details = {
            "version": version,
            "people": list(bundle.people),
            "photos": _counts(photos),
            "skipped": report["skipped_items"],
            "train_images": bundle.metrics.get("train_images"),
            "test_images": bundle.metrics.get("test_images"),
            "train_accuracy": report["train_accuracy"],
            "test_accuracy": report["test_accuracy"],
            "test_accuracy_before": report["test_accuracy_before"],
            "chance": report["chance"],
            "temperature": bundle.metrics.get("temperature"),
            "epochs": self.train_settings.epochs,
            "steps": bundle.metrics.get("steps"),
            "train_s": report["finetune_seconds"],
        }
        return recognizer, details

    def __call__(self, photos: Photos, version: int) -> Built:
        recognizer, details = self.train(photos, version)
        return Built(recognizer, details)


class FusionFactory:
    """CLIP's name when the gallery agrees (:class:`models.fusion.FusionRecognizer`)."""

    name = "fusion"

    def __init__(self, clip: ClipFactory, gallery: GalleryFactory) -> None:
        self.clip = clip
        self.gallery = gallery

    @property
    def threshold(self) -> float:
        return self.clip.threshold

    @property
    def untrained(self) -> bool:
        return self.clip.untrained

    @property
    def description(self) -> str:
        return f"fusion: {self.clip.description}; confirmed by {self.gallery.description}"

    def settings(self) -> dict[str, Any]:
        return {"clip": self.clip.settings(), "gallery": self.gallery.settings()}

    def __call__(self, photos: Photos, version: int) -> Built:
        from models.fusion import FusionRecognizer

        clip, details = self.clip.train(photos, version)
        fusion = FusionRecognizer(clip, self.gallery.gallery(photos))
        return Built(fusion, {**details, "gallery_threshold": self.gallery.threshold})


def _counts(photos: Photos) -> dict[str, int]:
    return {name: len(crops) for name, crops in sorted(photos.items())}
