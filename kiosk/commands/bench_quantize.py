"""`kiosk bench quantize --json PATH`: int8 against fp32 for MobileFaceNet and CLIP's image
tower, quality and speed (kiosk/bench/quantize.py says what is measured)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.bench.data import shared_folder
from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic


def register_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk bench quantize` (registered by kiosk/commands/bench_cmd.py)."""
    parser = verbs.add_parser("quantize", help="int8 against fp32: agreement and speed")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="shared data folder (default: $KIOSK_SHARED or ../shared)",
    )
    parser.add_argument("--people", type=int, default=60, help="LFW people compared")
    parser.add_argument("--photos", type=int, default=10, help="photos per person at most")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[2], help="intra-op thread counts timed"
    )
    parser.add_argument("--reps", type=int, default=30, help="timed runs per model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiosk.bench.quantize import FACE_SET, run_quantize

    for flag, value, least in (("--people", args.people, 2), ("--photos", args.photos, 3)):
        if value < least:
            raise UserError(f"{flag} must be at least {least} (two gallery photos and a probe)")
    if args.reps < 1 or min(args.threads) < 0:
        raise UserError("--reps must be at least 1 and --threads 0 (all cores) or more")
    faces = shared_folder("faces", args.shared) / FACE_SET
    if not faces.is_dir():
        raise UserError(f"{faces} does not exist (the LFW people the comparison uses)")
    report = run_quantize(
        load_config(args.config),
        faces,
        people=args.people,
        photos=args.photos,
        threads=args.threads,
        reps=args.reps,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    write_json_atomic(args.json, report)
    clip = report["clip"]
    summary = {
        "mobilefacenet": report["mobilefacenet"]["quality"],
        "clip": clip["quality"] or f"quality skipped: {clip['quality_reason']}",
        "clip_speed": clip["speed"],
        "goals": report["goals"],
    }
    print(json.dumps(summary))
    return 0
