"""Face detection: boxes, scores, 5 keypoints.

SCRFD (insightface over onnxruntime; weights for non-commercial research only) or YuNet
(OpenCV, MIT; see :mod:`models.yunet`), chosen by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from models import registry
from models.errors import ModelError
from models.runtime import create_session

SCRFD_DETECTORS = ("scrfd_10g", "scrfd_2.5g", "scrfd_0.5g")
YUNET_DETECTORS = ("yunet", "yunet_2026may")
DETECTORS = SCRFD_DETECTORS + YUNET_DETECTORS
DEFAULT_DETECTOR = "scrfd_2.5g"


@dataclass(frozen=True, eq=False)
class Face:
    box: NDArray[np.float32]  # x1, y1, x2, y2 in image pixels
    score: float
    kps: NDArray[np.float32]  # (5, 2): left eye, right eye, nose, left and right mouth corner

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels."""
        x1, y1, x2, y2 = self.box
        return float(min(x2 - x1, y2 - y1))


class FaceDetector:
    """An SCRFD model bound to one onnxruntime session, or a YuNet model (names ``yunet*``).

    ``input_size`` is the square the image is letterboxed into. A kiosk face is close to
    the camera and large, so 320 is both faster and better than 640 (large faces fall
    outside the detector's range at 640).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = DEFAULT_DETECTOR,
        input_size: int = 320,
        threshold: float = 0.5,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        if input_size % 32:
            raise ValueError(f"detector input size must be a multiple of 32, got {input_size}")
        self.name = name
        self.input_size = input_size
        if name in YUNET_DETECTORS:
            from models.yunet import PROVIDER, YuNet

            yunet = YuNet(model_path, input_size=input_size, threshold=threshold)
            self._detect_raw: Callable[[NDArray[np.uint8]], tuple[Any, Any]] = yunet.detect
            self._providers = [PROVIDER]
            return
        from insightface.model_zoo.scrfd import SCRFD

        session = create_session(model_path, device=device, threads=threads)
        scrfd = SCRFD(model_file=str(model_path), session=session, static_shape_sessions=False)
        scrfd.prepare(0, input_size=(input_size, input_size), det_thresh=threshold)
        self._detect_raw = scrfd.detect
        self._providers = list(session.get_providers())

    @classmethod
    def from_name(cls, name: str, model_dir: Path, **kwargs: object) -> FaceDetector:
        if name not in DETECTORS:
            raise ModelError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
        return cls(registry.model_path(name, model_dir), name=name, **kwargs)  # type: ignore[arg-type]

    @property
    def providers(self) -> list[str]:
        """The execution providers this detector really runs on."""
        return list(self._providers)

    def detect(
        self, image: NDArray[np.uint8], mode: Literal["all", "largest"] = "all"
    ) -> list[Face]:
        """Faces in a BGR image, largest first. ``mode="largest"`` keeps only the largest."""
        if image.ndim == 2:
            import cv2

            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
        dets, kpss = self._detect_raw(image)
        if kpss is None:
            raise ModelError(f"detector {self.name} gives no keypoints")
        faces = [
            Face(box=det[:4].astype(np.float32), score=float(det[4]), kps=kps.astype(np.float32))
            for det, kps in zip(dets, kpss, strict=True)
        ]
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces[:1] if mode == "largest" else faces

    def warm_up(self) -> None:
        self.detect(np.zeros((self.input_size, self.input_size, 3), dtype=np.uint8))
