"""Passive face anti-spoofing with MiniFASNet (Silent-Face-Anti-Spoofing, Apache-2.0).

Two small networks look at the face at two context scales: MiniFASNetV2 at 2.7 times
the face box, MiniFASNetV1SE at 4.0 times. Each takes an 80x80 **BGR** crop with
values **0-255, not normalised** (their authors' ``ToTensor`` does not divide by 255)
and gives 3 logits; after a softmax, index 1 is "live" (0 and 2 are two kinds of
attack). The two are fused as their authors do: the softmaxes are summed and halved,
and the label is the argmax.

The crop follows the authors' ``CropImage._get_new_box`` exactly: the box ``(x, y, w,
h)`` is scaled about its centre (the scale is first lowered, if needed, so that the
scaled box fits in the image), a box that sticks out is *shifted back* inside the
image rather than clipped, the corners are truncated to integers and the inclusive
pixel range is resized to 80x80 with bilinear interpolation.

Our boxes come from SCRFD as ``x1, y1, x2, y2``; the authors' detector gave
``[int(left), int(top), int(right - left + 1), int(bottom - top + 1)]``, and
:func:`xywh_from_corners` converts the same way. No other adjustment is made:
SCRFD's boxes (WIDER FACE style, brow to chin) are close to the boxes of the authors'
RetinaFace-style detector, and with them the three sample images in
``shared/antispoof`` give the same labels as the authors' own (see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from models import registry
from models.runtime import create_session

if TYPE_CHECKING:
    import onnxruntime

    from models.detector import Face

INPUT_SIZE = 80
LIVE_INDEX = 1
# (manifest name, crop scale), as the authors pair them: 2.7_80x80_MiniFASNetV2.pth and
# 4_0_0_80x80_MiniFASNetV1SE.pth.
LIVENESS_MODELS: tuple[tuple[str, float], ...] = (
    ("minifasnet_v2", 2.7),
    ("minifasnet_v1se", 4.0),
)

BoxXYWH = tuple[int, int, int, int]
BoxCorners = tuple[int, int, int, int]


def xywh_from_corners(box: Sequence[float] | NDArray[np.floating]) -> BoxXYWH:
    """An ``x1, y1, x2, y2`` detector box as the authors' integer ``(x, y, w, h)``."""
    left, top, right, bottom = (float(v) for v in box[:4])
    return int(left), int(top), int(right - left + 1), int(bottom - top + 1)


def scaled_box(image_w: int, image_h: int, box: BoxXYWH, scale: float) -> BoxCorners:
    """The crop's inclusive corners ``(x1, y1, x2, y2)``: ``box`` scaled about its centre.

    The scale is lowered until the scaled box fits in the image, and a box that sticks
    out is shifted back inside, not clipped, so the crop keeps its size and aspect.
    """
    x, y, box_w, box_h = box
    if box_w <= 0 or box_h <= 0:
        raise ValueError(f"face box must have a positive size, got {box}")
    scale = min((image_h - 1) / box_h, (image_w - 1) / box_w, scale)
    new_w = box_w * scale
    new_h = box_h * scale
    centre_x = x + box_w / 2
    centre_y = y + box_h / 2
    left = centre_x - new_w / 2
    top = centre_y - new_h / 2
    right = centre_x + new_w / 2
    bottom = centre_y + new_h / 2
    if left < 0:
        right -= left
        left = 0
    if top < 0:
        bottom -= top
        top = 0
    if right > image_w - 1:
        left -= right - image_w + 1
        right = image_w - 1
    if bottom > image_h - 1:
        top -= bottom - image_h + 1
        bottom = image_h - 1
    return int(left), int(top), int(right), int(bottom)


def crop_face(
    image: NDArray[np.uint8], box: BoxXYWH, scale: float, size: int = INPUT_SIZE
) -> NDArray[np.uint8]:
    """The ``size`` x ``size`` BGR crop a MiniFASNet of crop ``scale`` takes."""
    import cv2

    height, width = image.shape[:2]
    x1, y1, x2, y2 = scaled_box(width, height, box, scale)
    patch = image[y1 : y2 + 1, x1 : x2 + 1]
    return np.asarray(cv2.resize(patch, (size, size)), dtype=np.uint8)


def to_input(crop: NDArray[np.uint8]) -> NDArray[np.float32]:
    """A BGR uint8 crop as the network's ``[1, 3, H, W]`` float input, still 0-255."""
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)


def softmax(logits: NDArray[np.floating]) -> NDArray[np.float32]:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / np.sum(exp, axis=-1, keepdims=True), dtype=np.float32)


@dataclass(frozen=True)
class LivenessScore:
    """The fused answer for one face in one frame.

    ``probs`` are the two models' softmaxes summed and halved (they sum to 1);
    ``live`` is ``probs[1]``; ``label`` is their argmax, the authors' decision.
    """

    probs: tuple[float, float, float]

    @property
    def live(self) -> float:
        return self.probs[LIVE_INDEX]

    @property
    def label(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def is_live(self) -> bool:
        """The authors' single-frame decision: the argmax is the live class."""
        return self.label == LIVE_INDEX


class LivenessChecker:
    """The two MiniFASNet models, each bound to one onnxruntime session."""

    def __init__(
        self,
        models: Sequence[tuple[Path, float]],
        *,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        if not models:
            raise ValueError("a liveness checker needs at least one model")
        self._models: list[tuple[onnxruntime.InferenceSession, str, float]] = []
        for path, scale in models:
            session = create_session(path, device=device, threads=threads)
            self._models.append((session, session.get_inputs()[0].name, scale))

    @classmethod
    def from_dir(
        cls, model_dir: Path, *, device: str = "auto", threads: int = 0
    ) -> LivenessChecker:
        """Both manifest models from ``model_dir``; :class:`ModelError` names a missing file."""
        models = [(registry.model_path(name, model_dir), scale) for name, scale in LIVENESS_MODELS]
        return cls(models, device=device, threads=threads)

    @property
    def providers(self) -> list[str]:
        """The execution providers the sessions really run on."""
        return list(self._models[0][0].get_providers())

    @property
    def model_count(self) -> int:
        return len(self._models)

    def check_box(
        self, image: NDArray[np.uint8], box: BoxXYWH, model: int | None = None
    ) -> LivenessScore:
        """Score the face in ``box`` (the authors' integer ``x, y, w, h``) of a BGR image.

        With ``model=None`` every model runs and their softmaxes are averaged (the
        authors' fusion); with an index only that model runs, at a fraction of the cost.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
        models = self._models if model is None else [self._models[model]]
        total = np.zeros(3, dtype=np.float32)
        for session, input_name, scale in models:
            logits = session.run(None, {input_name: to_input(crop_face(image, box, scale))})[0]
            total += softmax(np.asarray(logits, dtype=np.float32))[0]
        fused = total / len(models)
        return LivenessScore(probs=(float(fused[0]), float(fused[1]), float(fused[2])))

    def check(
        self, image: NDArray[np.uint8], face: Face, model: int | None = None
    ) -> LivenessScore:
        """Score one SCRFD face of a BGR image (all models, or only ``model``)."""
        return self.check_box(image, xywh_from_corners(face.box), model)

    def warm_up(self) -> None:
        self.check_box(np.zeros((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8), (20, 20, 40, 40))
