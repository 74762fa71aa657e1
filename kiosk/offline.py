"""Faces in files, one JSON-ready row each: `kiosk recognize` and `kiosk liveness check`.

No pipeline, no tracking: every image, and every ``every``-th frame of a video, is judged
on its own (liveness on a single frame, the MiniFASNet authors' rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kiosk import build
from kiosk.config import KioskConfig
from models.errors import UserError
from models.io import ImageRefused, read_image

if TYPE_CHECKING:
    from models.antispoof import LivenessChecker
    from models.detector import Face
    from models.recognition import Prediction

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

Frame = tuple[str, int, NDArray[np.uint8] | None]


def frames(path: Path, every: int) -> Iterator[Frame]:
    """(source, frame index, BGR image or None if unreadable) for every input frame."""
    import cv2

    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            yield from frames(child, every)
        return
    if path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            yield str(path), 0, None
            return
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    yield str(path), index, np.asarray(frame, dtype=np.uint8)
                index += 1
        finally:
            capture.release()
        return
    try:
        image: NDArray[np.uint8] | None = read_image(path)
    except ImageRefused:
        image = None
    yield str(path), 0, image


def liveness_fields(
    checker: LivenessChecker, image: NDArray[np.uint8], face: Face
) -> dict[str, Any]:
    """The single-frame liveness verdict of one face: ``live`` and its score."""
    score = checker.check(image, face)
    return {"live": score.is_live, "liveness": round(score.live, 4), "probs": score.probs}


def box(face: Face) -> list[float]:
    return [round(float(v), 1) for v in face.box]


def recognize_rows(
    config: KioskConfig,
    path: Path,
    *,
    bundle: Path | None,
    liveness: bool,
    backend: str = "onnx",
    detector: str | None = None,
    every: int = 1,
    threshold: float | None = None,
    unreadable: Callable[[str], None] = lambda source: None,
) -> Iterator[dict[str, object]]:
    """One row per face in ``path`` (an image, a video or a folder): who it is (with a
    ``bundle``; "unknown" without) and, with ``liveness``, whether it is live. Frames
    that cannot be read are passed to ``unreadable`` and skipped."""
    from models.clip.classifier import ClipRecognizer
    from models.recognition import UNKNOWN, recognize_image

    if not path.exists():
        raise UserError(f"{path} does not exist")
    if every < 1:
        raise UserError("--every must be at least 1")
    if bundle is None and not liveness:
        raise UserError("give --bundle (who is it) and/or --liveness (is it a live face)")
    recognizer = None
    if bundle is not None:
        recognizer = ClipRecognizer.load(
            bundle,
            build.model_dir(config),
            backend=backend,  # type: ignore[arg-type]
            threshold=threshold,
            device=config.models.device,
            threads=config.models.threads,
        )
    checker = build.liveness_checker(config) if liveness else None
    face_detector = build.detector(config, name=detector)
    for source, index, image in frames(path, every):
        if image is None:
            unreadable(source)
            continue
        named: list[tuple[Face, Prediction | None]]
        if recognizer is not None:
            found = recognize_image(face_detector, recognizer, image)
            named = [(f.face, f.prediction) for f in found]
        else:
            named = [(face, None) for face in face_detector.detect(image)]
        for face, prediction in named:
            row: dict[str, object] = {
                "source": source,
                "frame": index,
                "box": box(face),
                "name": prediction.label if prediction else UNKNOWN,
                "confidence": round(prediction.confidence, 4) if prediction else None,
            }
            if checker is not None:
                verdict = liveness_fields(checker, image, face)
                row["live"], row["liveness"] = verdict["live"], verdict["liveness"]
            yield row


def read_photo(path: Path) -> NDArray[np.uint8]:
    """An image given by name on the command line: it must exist and be readable."""
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        return read_image(path, where="it")
    except ImageRefused as error:
        raise ImageRefused(f"cannot read {path} as an image: {error}") from None


def liveness_row(
    path: Path, index: int, face: Face, checker: LivenessChecker, image: NDArray[np.uint8]
) -> dict[str, Any]:
    """`kiosk liveness check`'s row for one face."""
    verdict = liveness_fields(checker, image, face)
    return {
        "image": str(path),
        "face": index,
        "box": box(face),
        "live": verdict["live"],
        "liveness": verdict["liveness"],
        "probs": [round(p, 4) for p in verdict["probs"]],
    }


def liveness_rows(
    config: KioskConfig, paths: Sequence[Path], input_size: int | None = None
) -> Iterator[dict[str, Any]]:
    """One row per face of each image (a row with ``face`` None for an image without)."""
    images = [(path, read_photo(path)) for path in paths]  # every file is checked first
    face_detector = build.detector(config, input_size=input_size)
    checker = build.liveness_checker(config)
    for path, image in images:
        faces = face_detector.detect(image)
        if not faces:
            yield {"image": str(path), "face": None, "live": None}
        for index, face in enumerate(faces):
            yield liveness_row(path, index, face, checker, image)
