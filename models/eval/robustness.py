"""Robustness: deterministic perturbations of query images (blur, noise, JPEG, brightness,
rotation), seeded by each image's path so every run gives the same images.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


Perturbation = Callable[[NDArray[np.uint8], int], NDArray[np.uint8]]


def _blur(sigma: float) -> Perturbation:
    def apply(image: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
        import cv2

        return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.uint8)

    return apply


def _noise(sd: float) -> Perturbation:
    def apply(image: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
        rng = np.random.default_rng(seed)
        noisy = image.astype(np.float32) + rng.normal(0.0, sd, image.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    return apply


def _jpeg(quality: int) -> Perturbation:
    def apply(image: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
        import cv2

        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return np.asarray(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), np.uint8).reshape(image.shape)

    return apply


def _brightness(factor: float) -> Perturbation:
    def apply(image: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
        return np.clip(np.rint(image.astype(np.float32) * factor), 0, 255).astype(np.uint8)

    return apply


def _rotate(degrees: float) -> Perturbation:
    def apply(image: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
        import cv2

        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        rotated = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        return np.asarray(rotated, np.uint8)

    return apply


PERTURBATIONS: dict[str, Perturbation] = {
    "blur2": _blur(2.0),
    "blur4": _blur(4.0),
    "noise10": _noise(10.0),
    "noise25": _noise(25.0),
    "jpeg30": _jpeg(30),
    "jpeg10": _jpeg(10),
    "dark0.5": _brightness(0.5),
    "bright1.5": _brightness(1.5),
    "rot10": _rotate(10.0),
    "rot-10": _rotate(-10.0),
}


def perturb(image: NDArray[np.uint8], kind: str, key: str, seed: int = 0) -> NDArray[np.uint8]:
    """``image`` altered by perturbation ``kind``; random ones draw from seed + crc32(key)
    (key = the image's relative path), so every run and every order gives the same image."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; choose from {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind](image, seed + zlib.crc32(key.encode()))
