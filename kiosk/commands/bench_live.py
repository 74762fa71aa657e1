"""`kiosk bench live --json PATH`: the live pipeline's speed, latency and memory
(kiosk/bench/live.py says what is measured)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic


def register_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk bench live` (registered by kiosk/commands/bench_cmd.py)."""
    parser = verbs.add_parser("live", help="the live pipeline's fps, latency and memory")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument(
        "--videos",
        nargs="*",
        type=Path,
        default=None,
        help="clips (default: $KIOSK_SHARED/videos/solo_0*.mp4)",
    )
    parser.add_argument(
        "--max-frames", type=int, default=0, help="frames per clip and mode (0 = all)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip face_recognition")
    parser.add_argument("--no-clip", action="store_true", help="skip the CLIP recognizer")
    parser.add_argument(
        "--people",
        type=int,
        default=40,
        help="people enrolled once the new one is saved, for the Save-to-named figure",
    )
    parser.add_argument(
        "--no-lifecycle",
        action="store_true",
        help="skip the Save-to-named and after-delete figures",
    )
    parser.add_argument(
        "--soak-minutes", type=float, default=0.0, help="loop a clip this long, sampling RSS"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiosk.bench.live import run_live

    if not args.no_lifecycle and args.people < 3:
        raise UserError("--people must be at least 3 (two enrolled before the save)")
    report = run_live(
        load_config(args.config),
        args.videos,
        max_frames=args.max_frames,
        reference=not args.no_reference,
        clip=not args.no_clip,
        soak_minutes=args.soak_minutes,
        lifecycle_people=0 if args.no_lifecycle else args.people,
    )
    write_json_atomic(args.json, report)
    summary = {k: report[k] for k in ("fps", "latency_p95_ms", "reference_fps")}
    for key in ("clip", "clip_int8"):
        if report.get(key):
            camera = report[key]["camera"]
            summary[f"{key}_camera"] = {k: camera[k] for k in ("fps", "latency_p95_ms")}
    saved = report.get("save_to_named")
    if saved:
        summary["save_to"] = {
            k: saved[k] for k in ("save_to_bundle_live_s", "save_to_named_s", "named_reason")
        }
    print(json.dumps(summary))
    return 0
