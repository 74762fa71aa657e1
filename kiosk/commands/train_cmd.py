"""`kiosk train --people DIR --out PATH`: photos per person -> a recognizer bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic
from models.paths import APP_NAME

if TYPE_CHECKING:
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train", help="finetune CLIP's text encoder on a folder per person; write a bundle"
    )
    parser.add_argument(
        "--people", type=Path, required=True, help="folder with a folder per person"
    )
    parser.add_argument("--out", type=Path, required=True, help="the bundle file to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    parser.add_argument(
        "--pretrained",
        choices=["openai", "none"],
        default=None,
        help="CLIP weights (default: config [clip] pretrained)",
    )
    parser.add_argument("--detector", default=None, help="detector name (default: config)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    parser.add_argument("--no-cache", action="store_true", help="do not reuse cached features")
    parser.set_defaults(handler=run)


def feature_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME)) / "clip_features"


def run(args: argparse.Namespace) -> int:
    import torch

    from models import registry
    from models.clip.bundle import save_bundle
    from models.clip.identity import warn_untrained
    from models.detector import FaceDetector
    from models.io import scan_people
    from models.train.bundle import train_recognizer

    config = load_config(args.config)
    if "{name}" not in config.clip.prompt:
        raise UserError(f"the [clip] prompt {config.clip.prompt!r} has no {{name}} placeholder")
    pretrained = args.pretrained or config.clip.pretrained
    model_dir = registry.resolve_model_dir(config.models.dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        people, skipped = scan_people(args.people)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    if not people:
        raise UserError(
            f"{args.people} has no person folders (expected {args.people}/<name>/*.jpg)"
        )
    detector = FaceDetector.from_name(
        args.detector or config.detector.name,
        model_dir,
        input_size=config.train.detector_input_size,
        threshold=config.detector.threshold,
        threads=args.threads,
    )
    if pretrained == "none":
        warn_untrained()
    from kiosk.build import train_settings

    settings = train_settings(config)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        bundle, report = train_recognizer(
            people,
            detector,
            config.clip.model,
            pretrained,
            model_dir,
            settings,
            threshold=config.clip.threshold,
            align_margin=config.clip.align_margin,
            cache_root=None if args.no_cache else feature_cache_dir(),
            skipped=skipped,
            log=log,
        )
    except ValueError as error:
        for item in skipped:
            log(f"skipped {item.path}: {item.reason}")
        raise UserError(f"nothing written: {error}") from None
    for item in report["skipped_items"]:
        log(f"skipped {item['path']}: {item['reason']}")
    try:
        save_bundle(bundle, args.out)
    except OSError as error:
        raise UserError(f"cannot write the bundle {args.out}: {error.strerror}") from error
    if args.json:
        write_json_atomic(args.json, {**report, "bundle": str(args.out)})
    log(
        f"wrote {args.out}: {report['people']} people, train accuracy "
        f"{report['train_accuracy']:.3f}, held-out {report['test_accuracy']}, "
        f"{report['skipped']} skipped, {report['seconds']:.1f} s"
    )
    if pretrained == "none":
        warn_untrained()
    return 0
