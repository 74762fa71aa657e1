"""`kiosk train --people DIR --out PATH`: photos per person -> a recognizer bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kiosk.config import load_config
from models.io import write_json_atomic


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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from kiosk.training import (
        feature_cache_dir,
        people_in_folder,
        save_trained_bundle,
        train_bundle,
    )
    from models.clip.identity import warn_untrained

    config = load_config(args.config)
    untrained = (args.pretrained or config.clip.pretrained) == "none"
    people, skipped = people_in_folder(args.people)
    if untrained:
        warn_untrained()
    bundle, report = train_bundle(
        config,
        people,
        pretrained=args.pretrained,
        detector=args.detector,
        threads=args.threads,
        cache_dir=None if args.no_cache else feature_cache_dir(),
        skipped=skipped,
        log=log,
    )
    for item in report["skipped_items"]:
        log(f"skipped {item['path']}: {item['reason']}")
    save_trained_bundle(bundle, args.out)
    if args.json:
        write_json_atomic(args.json, {**report, "bundle": str(args.out)})
    log(
        f"wrote {args.out}: {report['people']} people, train accuracy "
        f"{report['train_accuracy']:.3f}, held-out {report['test_accuracy']}, "
        f"{report['skipped']} skipped, {report['seconds']:.1f} s"
    )
    if untrained:
        warn_untrained()
    return 0
