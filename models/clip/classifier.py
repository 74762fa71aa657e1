"""CLIP RN50 as a face classifier: frozen image tower, per-person text embeddings.

Recognition runs the image tower alone (torch, or its ONNX export over onnxruntime), then
centres the features with the training mean stored in the bundle, normalises them and
compares them with the precomputed per-person text embeddings; the softmax over people
is compared with the reject threshold.

torch and open_clip are imported only when a model is built, so importing this module
is cheap; the ONNX backend needs neither once the tower has been exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from models.align import align_for_clip
from models.detector import Face
from models.errors import ModelError
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
    to_blob,
)

INT8_CALIBRATION = 64  # aligned crops the int8 tower's activation ranges come from


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


Rejection = Literal["max_softmax", "calibrated"]
Precision = Literal["fp32", "int8"]


class ClipRecognizer:
    """A :class:`models.recognition.PeopleRecognizer` over a trained bundle.

    ``rejection``: ``max_softmax`` (the research's: the softmax at the bundle's learnt
    logit scale, compared with the threshold, 0.8) or ``calibrated`` (the softmax at the
    temperature fitted on the held-out enrollment photos, stored in the bundle).
    """

    kind = "clip"

    def __init__(
        self,
        bundle: RecognizerBundle,
        tower: ImageTower,
        threshold: float | None = None,
        *,
        rejection: Rejection = "max_softmax",
    ) -> None:
        self.bundle = bundle
        self.tower = tower
        self.rejection = rejection
        self._threshold = bundle.settings.threshold if threshold is None else threshold
        self.text_embeddings = normalise_rows(bundle.text_embeddings)
        self.scale = bundle.logit_scale
        if rejection == "calibrated":
            temperature = bundle.metrics.get("temperature")
            if not temperature:
                raise ModelError(
                    "this bundle has no fitted temperature (it was trained without held-out "
                    'photos): train it again, or set [clip] rejection = "max_softmax"'
                )
            self.scale = 1.0 / float(temperature)

    @classmethod
    def load(
        cls,
        bundle_path: Path,
        model_dir: Path | None,
        backend: Backend = "onnx",
        threshold: float | None = None,
        device: str = "auto",
        threads: int = 0,
        *,
        rejection: Rejection = "max_softmax",
        precision: Precision = "fp32",
        calibration: Callable[[], Sequence[NDArray[np.uint8]]] | None = None,
    ) -> ClipRecognizer:
        """Load a bundle with its image tower; the ONNX tower is exported once and cached
        next to the bundle, after which recognition needs no torch.

        ``precision = "int8"`` runs the tower quantized (:mod:`models.quantize`), made
        once beside the fp32 tower and calibrated on ``calibration()``'s aligned crops
        (the enrolled people's); without them the fp32 tower is used and a warning logged.
        """
        from models.clip.bundle import load_bundle

        bundle = load_bundle(bundle_path)
        if bundle.identity.pretrained == "none":
            warn_untrained()
        tower: ImageTower
        onnx_path = onnx_tower_path(bundle_path, bundle.identity)
        if backend == "onnx" and not onnx_path.is_file():
            export_image_tower(rebuild_image_tower(bundle.identity, model_dir), onnx_path)
        if backend == "torch":
            tower = TorchImageTower(rebuild_image_tower(bundle.identity, model_dir))
        elif precision == "int8":
            path = int8_tower(onnx_path, calibration)
            tower = OnnxImageTower(
                path,
                device=device,
                threads=threads,
                precision="int8" if path != onnx_path else "fp32",
            )
        else:
            tower = OnnxImageTower(onnx_path, device=device, threads=threads)
        return cls(bundle, tower, threshold, rejection=rejection)

    def with_bundle(self, bundle: RecognizerBundle) -> ClipRecognizer:
        """A recognizer over another bundle of the same image tower, sharing this tower
        (a hot swap after a retrain costs no model load)."""
        if bundle.identity != self.bundle.identity:
            raise ModelError("the new bundle was trained on another image tower")
        return ClipRecognizer(bundle, self.tower, self._threshold, rejection=self.rejection)

    def without(self, person_ids: set[str]) -> ClipRecognizer:
        return self.with_bundle(self.bundle.without(person_ids))

    def renamed(self, names: dict[str, str]) -> ClipRecognizer:
        return self.with_bundle(self.bundle.renamed(names))

    @property
    def people(self) -> Sequence[str]:
        return self.bundle.people

    @property
    def person_ids(self) -> Sequence[str]:
        return self.bundle.person_ids

    @property
    def version(self) -> int:
        return self.bundle.version

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def providers(self) -> list[str]:
        return self.tower.providers

    @property
    def precision(self) -> str:
        """The image tower's arithmetic in use: ``int8`` only once the quantized tower
        could be made (``[clip] precision = "int8"`` without calibration crops runs fp32)."""
        return self.tower.precision

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return align_for_clip(image, face.kps, self.bundle.settings.align_margin)

    def probabilities(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        features = encode_crops(self.tower, crops)
        return class_probabilities(
            features, self.bundle.feature_mean, self.text_embeddings, self.scale
        )

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        if not crops:
            return []
        if not self.bundle.people:
            return [Prediction(name=None, best="", confidence=0.0) for _ in crops]
        probs = self.probabilities(crops)
        people, ids = self.bundle.people, self.bundle.person_ids
        return [decide(row, people, self._threshold, ids) for row in probs]


def int8_tower(fp32: Path, calibration: Callable[[], Sequence[NDArray[np.uint8]]] | None) -> Path:
    """The int8 tower beside ``fp32`` (made on first use from the calibration crops, named
    after this machine's :func:`models.quantize.int8_recipe`), or ``fp32`` itself when no
    crop is there to calibrate on."""
    import logging

    from models.quantize import quantize_int8

    path = int8_tower_path(fp32)
    for stale in int8_towers(fp32.parent, fp32.name.removesuffix(".onnx")):
        if stale != path:  # another recipe's (the CPU changed) or an older program's
            stale.unlink(missing_ok=True)
    if path.is_file():
        return path
    crops = list(calibration()) if calibration is not None else []
    if not crops:
        logging.getLogger(__name__).warning(
            "no enrolled crops to calibrate the int8 image tower on: using fp32 for now"
        )
        return fp32
    return quantize_int8(fp32, path, [to_blob([crop]) for crop in crops[:INT8_CALIBRATION]])


def int8_tower_path(fp32: Path) -> Path:
    """Where :func:`int8_tower` keeps the int8 tower of the fp32 tower ``fp32``."""
    from models.quantize import int8_recipe

    return fp32.with_name(f"{fp32.name.removesuffix('.onnx')}.int8-{int8_recipe()}.onnx")


def int8_towers(folder: Path, fp32_stem: str = "*") -> list[Path]:
    """The int8 towers in ``folder`` (of the fp32 tower named ``fp32_stem``.onnx; default:
    of any), whatever recipe made them."""
    return sorted(folder.glob(f"{fp32_stem}.int8*.onnx"))


def onnx_tower_path(bundle_path: Path, identity: ClipIdentity) -> Path:
    return bundle_path.with_name(f"{bundle_path.name}.tower-{identity.key}.onnx")
