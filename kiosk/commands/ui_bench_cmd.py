"""`kiosk bench ui`: the GUI thread's cost of drawing one result, as JSON (kiosk/ui/bench.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic


def register_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk bench ui` (registered by kiosk/commands/bench_cmd.py)."""
    parser = verbs.add_parser("ui", help="the window's drawing cost per frame")
    parser.add_argument("--video", type=Path, required=True, help="video file to draw")
    parser.add_argument("--frames", type=int, default=50, help="frames read (default 50)")
    parser.add_argument("--repeats", type=int, default=300, help="draws timed (default 300)")
    parser.add_argument(
        "--size",
        action="append",
        default=None,
        metavar="WxH",
        help="window size, repeatable (default: 1280x720 and 1920x1080)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the JSON here too")
    parser.set_defaults(handler=_bench)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like 1280x720, got {text!r}") from None
    if not (160 <= w <= 7680 and 120 <= h <= 4320):
        raise UserError(f"--size {text} is outside 160x120 .. 7680x4320")
    return w, h


def _bench(args: argparse.Namespace) -> int:
    from kiosk.ui.bench import run_ui_bench

    sizes = [_size(s) for s in (args.size or ["1280x720", "1920x1080"])]
    if not args.video.is_file():
        raise UserError(f"video file {args.video} does not exist")
    if args.frames < 1 or args.repeats < 1:
        raise UserError("--frames and --repeats must be at least 1")
    config = load_config(args.config)
    report = run_ui_bench(config, args.video, frames=args.frames, repeats=args.repeats, sizes=sizes)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        write_json_atomic(args.json, report)
        print(f"kiosk: wrote {args.json}", file=sys.stderr)
    return 0
