"""`kiosk recognize [--bundle B] [--liveness] PATH`: one JSON line per face in an image,
video or folder. Without a bundle every face is named "unknown" (liveness alone)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kiosk.config import load_config
from models.errors import UserError

if TYPE_CHECKING:
    from models.detector import Face
    from models.recognition import Prediction

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "recognize", help="name the faces in an image, a video or a folder (JSON lines)"
    )
    parser.add_argument("path", type=Path, help="image, video file, or folder of images")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle from `kiosk train`")
    parser.add_argument(
        "--liveness",
        action="store_true",
        help='add "live" and "liveness" (MiniFASNet, single frame) to each face',
    )
    parser.add_argument(
        "--backend",
        choices=["onnx", "torch"],
        default="onnx",
        help="image tower backend (onnx: exported once, cached by the bundle)",
    )
    parser.add_argument("--detector", default=None, help="detector name (default: config)")
    parser.add_argument("--every", type=int, default=1, help="video: every Nth frame")
    parser.add_argument(
        "--threshold", type=float, default=None, help="reject threshold (default: the bundle's)"
    )
    parser.set_defaults(handler=run)


def frames(path: Path, every: int) -> Iterator[tuple[str, int, NDArray[np.uint8] | None]]:
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
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        yield str(path), 0, None
        return
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    yield str(path), 0, None if image is None else np.asarray(image, dtype=np.uint8)


def run(args: argparse.Namespace) -> int:
    from models import registry
    from models.clip.classifier import ClipRecognizer
    from models.detector import FaceDetector
    from models.recognition import UNKNOWN, recognize_image

    if not args.path.exists():
        raise UserError(f"{args.path} does not exist")
    if args.every < 1:
        raise UserError("--every must be at least 1")
    if args.bundle is None and not args.liveness:
        raise UserError("give --bundle (who is it) and/or --liveness (is it a live face)")
    config = load_config(args.config)
    model_dir = registry.resolve_model_dir(config.models.dir)
    recognizer = None
    if args.bundle is not None:
        recognizer = ClipRecognizer.load(
            args.bundle,
            model_dir,
            backend=args.backend,
            threshold=args.threshold,
            device=config.models.device,
            threads=config.models.threads,
        )
    checker = None
    if args.liveness:
        from models.antispoof import LivenessChecker

        checker = LivenessChecker.from_dir(
            model_dir, device=config.models.device, threads=config.models.threads
        )
    detector = FaceDetector.from_name(
        args.detector or config.detector.name,
        model_dir,
        input_size=config.detector.input_size,
        threshold=config.detector.threshold,
        device=config.models.device,
        threads=config.models.threads,
    )
    unreadable = 0
    for source, index, image in frames(args.path, args.every):
        if image is None:
            unreadable += 1
            print(
                f"kiosk: skipped {source}: unreadable, corrupt or not an image/video",
                file=sys.stderr,
            )
            continue
        named: list[tuple[Face, Prediction | None]]
        if recognizer is not None:
            named = [(f.face, f.prediction) for f in recognize_image(detector, recognizer, image)]
        else:
            named = [(face, None) for face in detector.detect(image)]
        for face, prediction in named:
            line: dict[str, object] = {
                "source": source,
                "frame": index,
                "box": [round(float(v), 1) for v in face.box],
                "name": prediction.label if prediction else UNKNOWN,
                "confidence": round(prediction.confidence, 4) if prediction else None,
            }
            if checker is not None:
                score = checker.check(image, face)
                line["live"] = score.is_live
                line["liveness"] = round(score.live, 4)
            print(json.dumps(line, ensure_ascii=False), flush=True)
    return 1 if unreadable and args.path.is_file() else 0
