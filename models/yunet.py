"""YuNet face detection (OpenCV's ``cv2.FaceDetectorYN``, MIT licence): boxes, scores, 5 keypoints.

A permissively licensed alternative to SCRFD (whose insightface weights are for
non-commercial research only). It runs on OpenCV's DNN module, on the CPU, with no
onnxruntime. The image is scaled so its longer side is ``input_size`` and the results are
scaled back, so the cost does not grow with the camera's resolution.

YuNet's keypoints are the subject's right eye, left eye, nose tip, right and left mouth
corner. The subject's right eye is on the image's left, so this is the same order as
SCRFD's and the ArcFace template's (image-left eye first): no reordering is needed, and
``tests/test_yunet.py`` checks it against SCRFD on a portrait.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

PROVIDER = "OpenCV-DNN-CPU"


class YuNet:
    """One ``cv2.FaceDetectorYN`` with the frame-size bookkeeping it needs."""

    def __init__(
        self, model_path: Path, *, input_size: int, threshold: float, nms: float = 0.3
    ) -> None:
        self.input_size = input_size
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(model_path), "", (input_size, input_size), threshold, nms, 5000
            )
        except cv2.error as error:
            raise ValueError(f"OpenCV cannot load the YuNet model {model_path}: {error}") from error
        self._size: tuple[int, int] = (input_size, input_size)

    def detect(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(dets (N, 5) x1 y1 x2 y2 score, kps (N, 5, 2))`` in ``image``'s pixels."""
        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        else:
            scale = 1.0
            size = (width, height)
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, raw = self._net.detect(image)
        if raw is None or len(raw) == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        raw = np.asarray(raw, dtype=np.float32) / np.float32(scale)
        x, y, w, h = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
        score = raw[:, 14] * np.float32(scale)  # the score is not a coordinate: undo the scaling
        dets = np.stack([x, y, x + w, y + h, score], axis=1).astype(np.float32)
        kps = raw[:, 4:14].reshape(-1, 5, 2).astype(np.float32)
        return dets, kps
