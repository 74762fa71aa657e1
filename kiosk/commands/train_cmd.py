"""`kiosk train`: the CLIP bundle, from the people store (default) or a folder per person."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kiosk.config import KioskConfig, load_config
from models.errors import UserError
from models.io import write_json_atomic
from models.words import counted


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="finetune CLIP's text encoder on the enrolled people (the people store, or "
        "--people DIR); write the recognizer bundle",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--from-store",
        action="store_true",
        help="train from the people store ([enroll] store_dir; the default)",
    )
    source.add_argument(
        "--people", type=Path, default=None, help="a folder with a folder of photos per person"
    )
    parser.add_argument("--store", type=Path, default=None, help="another people store folder")
    parser.add_argument(
        "--out", type=Path, default=None, help="the bundle (default: [recognizer] bundle)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    parser.add_argument(
        "--pretrained",
        choices=["openai", "none"],
        default=None,
        help="CLIP weights (default: config [clip] pretrained)",
    )
    parser.add_argument("--detector", default=None, help="detector (--people; default: config)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    parser.add_argument("--no-cache", action="store_true", help="do not reuse cached features")
    parser.add_argument(
        "--progress", action="store_true", help="progress as JSON lines on stdout (the kiosk's)"
    )
    parser.add_argument("--nice", type=int, default=0, help="lower this run's CPU priority")
    parser.set_defaults(handler=run)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from kiosk import build

    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)
    config = load_config(args.config)
    if args.pretrained:
        config = config.model_copy(
            update={"clip": config.clip.model_copy(update={"pretrained": args.pretrained})}
        )
    if args.store:
        config = build.with_store(config, args.store)
    if args.people is not None:
        return _from_folder(args, config)
    return _from_store(args, config)


def _from_store(args: argparse.Namespace, config: KioskConfig) -> int:
    from enroll.store import open_store
    from kiosk.erasure import complete_erasures
    from kiosk.live.retrain import progress_line
    from kiosk.training import train_from_store

    def progress(fraction: float, what: str, eta: float | None) -> None:
        if args.progress:
            eta_s = None if eta is None else round(eta, 1)
            line = progress_line(progress=round(fraction, 3), message=what, eta_s=eta_s)
            print(line, flush=True)

    with open_store(config.enroll) as store:
        complete_erasures(config, store)  # whoever its opening purged: gone everywhere first
        done = train_from_store(config, store, out=args.out, progress=progress, log=log)
    if args.progress:
        print(progress_line(progress=1.0, message=done.message, version=done.version), flush=True)
    if args.json and done.report:
        write_json_atomic(args.json, done.report)
    log(f"{done.message} (bundle version {done.version})")
    return 0


def _from_folder(args: argparse.Namespace, config: KioskConfig) -> int:
    from kiosk.training import (
        feature_cache_dir,
        people_in_folder,
        save_trained_bundle,
        train_bundle,
    )
    from models.clip.identity import warn_untrained

    if args.out is None:
        raise UserError(
            "--people needs --out FILE: the kiosk's own bundle is trained from the people store"
        )
    untrained = config.clip.pretrained == "none"
    people, skipped = people_in_folder(args.people)
    if untrained:
        warn_untrained()
    cache = None if args.no_cache else feature_cache_dir()
    bundle, report = train_bundle(
        config,
        people,
        detector=args.detector,
        threads=args.threads,
        cache_dir=cache,
        skipped=skipped,
        log=log,
    )
    for item in report["skipped_items"]:
        log(f"skipped {item['path']}: {item['reason']}")
    save_trained_bundle(bundle, args.out, cache)
    if args.json:
        write_json_atomic(args.json, {**report, "bundle": str(args.out)})
    log(
        f"wrote {args.out}: {counted(report['people'], 'person')}, train accuracy "
        f"{report['train_accuracy']:.3f}, held-out {report['test_accuracy']}, "
        f"{report['skipped']} skipped, {report['seconds']:.1f} s"
    )
    if untrained:
        warn_untrained()
    return 0
