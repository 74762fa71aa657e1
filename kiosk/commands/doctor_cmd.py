"""`kiosk doctor [--json]`: exits non-zero when the kiosk cannot run."""

from __future__ import annotations

import argparse
import json

from kiosk.config import load_config
from kiosk.setup.doctor import run_doctor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("doctor", help="check this machine and print fixes")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    report = run_doctor(load_config(args.config))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        for name, value in report.checks.items():
            print(f"{name}: {json.dumps(value, default=str)}")
        for problem in report.problems:
            print(f"\n[{problem.severity}] {problem.what}\n  fix: {problem.fix}")
        print("\nready" if report.can_run else "\nthe kiosk cannot run: fix the errors above")
    return 0 if report.can_run else 1
