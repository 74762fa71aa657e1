"""5-keypoint similarity alignment (eyes, nose, mouth corners) to a canonical template."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

# insightface's ArcFace 112x112 template (left eye, right eye, nose, left and right mouth).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_SIZE = 112
CLIP_SIZE = 224


def template(size: int, margin: float = 0.0) -> NDArray[np.float32]:
    """The ArcFace template scaled to ``size``; ``margin`` > 0 zooms out to keep more context."""
    if size <= 0:
        raise ValueError(f"alignment size must be positive, got {size}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"alignment margin must be in [0, 1), got {margin}")
    centre = ARCFACE_SIZE / 2.0
    scaled = (ARCFACE_TEMPLATE - centre) * (1.0 - margin) + centre
    return (scaled * (size / ARCFACE_SIZE)).astype(np.float32)


def similarity_matrix(kps: NDArray[np.floating], dst: NDArray[np.float32]) -> NDArray[np.float64]:
    """2x3 similarity transform (rotation, uniform scale, translation) taking ``kps`` to ``dst``."""
    src = np.asarray(kps, dtype=np.float32).reshape(5, 2)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("keypoints are degenerate; no similarity transform exists")
    return np.asarray(matrix, dtype=np.float64)


def align_face(
    image: NDArray[np.uint8], kps: NDArray[np.floating], size: int, margin: float = 0.0
) -> NDArray[np.uint8]:
    """The face warped so its keypoints land on the template, as a ``size`` x ``size`` image."""
    matrix = similarity_matrix(kps, template(size, margin))
    warped = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.asarray(warped, dtype=np.uint8)


def align_for_clip(
    image: NDArray[np.uint8], kps: NDArray[np.floating], margin: float = 0.0
) -> NDArray[np.uint8]:
    return align_face(image, kps, CLIP_SIZE, margin)


def align_arcface(image: NDArray[np.uint8], kps: NDArray[np.floating]) -> NDArray[np.uint8]:
    return align_face(image, kps, ARCFACE_SIZE)


def resize_crop(crop: NDArray[np.uint8], size: int = ARCFACE_SIZE) -> NDArray[np.uint8]:
    """An aligned crop at another side: the people store's 224 px crops (ArcFace template)
    are an ArcFace embedder's 112 px input once resized, since the template scales."""
    if crop.shape[0] == size:
        return crop
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.uint8)
