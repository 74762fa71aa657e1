"""`kiosk recognize [--bundle B] [--liveness] PATH`: one JSON line per face in an image,
video or folder. Without a bundle every face is named "unknown" (liveness alone)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.config import load_config


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


def run(args: argparse.Namespace) -> int:
    from kiosk.offline import recognize_rows

    unreadable: list[str] = []

    def skipped(source: str) -> None:
        unreadable.append(source)
        print(
            f"kiosk: skipped {source}: unreadable, corrupt or not an image/video", file=sys.stderr
        )

    rows = recognize_rows(
        load_config(args.config),
        args.path,
        bundle=args.bundle,
        liveness=args.liveness,
        backend=args.backend,
        detector=args.detector,
        every=args.every,
        threshold=args.threshold,
        unreadable=skipped,
    )
    for row in rows:
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return 1 if unreadable and args.path.is_file() else 0
