"""`kiosk run`: the door-side window over the live pipeline (kiosk/ui/door.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="open the door-side recognition window")
    parser.add_argument(
        "--source",
        default=None,
        help="camera index, video file, stream URL or image folder (default: the config's)",
    )
    parser.add_argument(
        "--windowed",
        action="store_true",
        help="a normal window for setup instead of the locked full-screen kiosk",
    )
    parser.add_argument(
        "--yes", action="store_true", help="download missing model files without asking"
    )
    # Also accepted after `run`; SUPPRESS keeps `kiosk --config X run` working.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from kiosk.ui.door import run_door

    return run_door(
        args.config,
        args.source,
        windowed=args.windowed,
        assume_yes=args.yes,
        kiosk=getattr(args, "kiosk", "kiosk"),
    )
