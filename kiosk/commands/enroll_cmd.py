"""`kiosk enroll`: the enrollment wizard on a camera or a video file (kiosk/ui/enroll_app.py).

``--auto NAME --report FILE`` plays the volunteer and the operator (agrees, types the
name, accepts every photo) and writes how long each wizard step took: the benchmark.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("enroll", help="enroll a volunteer with the guided wizard")
    parser.add_argument(
        "--source", default="0", help="camera index or video file standing in for it (default 0)"
    )
    parser.add_argument("--store", type=Path, default=None, help="override the people store dir")
    parser.add_argument("--auto", metavar="NAME", help="drive the wizard itself (benchmark)")
    parser.add_argument("--report", type=Path, help="with --auto: write step timings as JSON")
    parser.set_defaults(handler=_enroll)


def _enroll(args: argparse.Namespace) -> int:
    from kiosk import build
    from kiosk.erasure import finish_erasures
    from kiosk.ui.enroll_app import run_enrollment

    if args.report is not None and args.auto is None:
        raise UserError("--report needs --auto NAME")
    if args.auto is not None:
        from models.names import validate_name

        validate_name(args.auto)  # refused now, not after the models load
    config = load_config(args.config)
    finish_erasures(build.with_store(config, args.store))  # the purged: gone everywhere
    run = run_enrollment(config, args.source, store_dir=args.store, auto=args.auto)
    if run.report is not None:
        print(json.dumps(run.report, indent=2, ensure_ascii=False))
        if args.report is not None:
            write_json_atomic(args.report, run.report)
        if not run.enrolled:
            why = run.report.get("error") or "see the report"
            raise UserError(f"the automatic enrollment did not finish: {why}")
    return 0 if run.result == 0 or run.enrolled else 1
