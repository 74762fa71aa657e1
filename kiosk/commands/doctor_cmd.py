"""`kiosk doctor [--json]`: exits non-zero when the kiosk cannot run."""

from __future__ import annotations

import argparse
import json

from kiosk.config import config_path, load_config
from kiosk.setup.doctor import format_report, run_doctor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("doctor", help="check this machine and print fixes")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = run_doctor(
        config, config_file=config_path(args.config), kiosk=getattr(args, "kiosk", "kiosk")
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(format_report(report))
    return 0 if report.can_run else 1
