"""`kiosk bench live --json PATH`: the live pipeline's speed, latency and memory
(kiosk/bench/live.py says what is measured)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kiosk.config import load_config
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
        "--soak-minutes", type=float, default=0.0, help="loop a clip this long, sampling RSS"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiosk.bench.live import run_live

    report = run_live(
        load_config(args.config),
        args.videos,
        max_frames=args.max_frames,
        reference=not args.no_reference,
        clip=not args.no_clip,
        soak_minutes=args.soak_minutes,
    )
    write_json_atomic(args.json, report)
    print(json.dumps({k: report[k] for k in ("fps", "latency_p95_ms", "reference_fps")}))
    return 0
