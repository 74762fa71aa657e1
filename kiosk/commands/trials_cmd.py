"""`kiosk trials [simulate|sessions|export]`: deployment trials, live, offline and from the log.

Without a verb, ``kiosk trials`` opens the operator console: the live camera view beside
the trials panel, fed by the same live pipeline as ``kiosk run`` (kiosk/ui/trials_console.py).
The arguments are defined in trials_args.py; the work is done in kiosk/trials/runs.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from kiosk.commands import trials_args
from kiosk.config import load_config

if TYPE_CHECKING:
    from kiosk.trials.runs import Outputs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser, verbs = trials_args.register(subparsers)
    parser.set_defaults(handler=_console)
    verbs["simulate"].set_defaults(handler=_simulate)
    verbs["sessions"].set_defaults(handler=_sessions)
    verbs["export"].set_defaults(handler=_export)
    verbs["report"].set_defaults(handler=_report)


def _outputs(args: argparse.Namespace) -> Outputs:
    from kiosk.trials.runs import Outputs

    return Outputs(args.json, args.csv, args.report, args.target_fpr)


def _print_summary(summary: dict[str, object]) -> None:
    from kiosk.trials.runs import summary_lines

    for line in summary_lines(summary):
        print(line)


def _console(args: argparse.Namespace) -> int:
    from kiosk.ui.trials_console import run_console

    return run_console(load_config(args.config), args.source, args.db, args.operator)


def _simulate(args: argparse.Namespace) -> int:
    from kiosk.trials.runs import SimulationOptions, simulate

    options = SimulationOptions(
        videos=args.videos,
        enrolled=args.enrolled,
        visitors=args.visitors,
        recognizers=args.recognizer or ["gallery"],
        threshold=args.threshold,
        pretrained=args.pretrained,
        epochs=args.epochs,
        detector_size=args.detector_size,
        duration=args.duration,
        enroll_seconds=args.enroll_seconds,
        stride=args.stride,
        leave_one_out=args.leave_one_out,
    )
    summary = simulate(
        load_config(args.config),
        options,
        _outputs(args),
        db=args.db,
        operator=args.operator,
        progress=lambda line: print(line, file=sys.stderr),
    )
    _print_summary(summary)
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from kiosk.trials.runs import session_record, sessions, sessions_table

    infos = sessions(load_config(args.config), args.db)
    if args.json:
        print(json.dumps([session_record(info) for info in infos], indent=2))
    else:
        for line in sessions_table(infos):
            print(line)
    return 0


def _export(args: argparse.Namespace) -> int:
    from kiosk.trials.runs import export_session

    config = load_config(args.config)
    _print_summary(export_session(config, args.db, args.session, _outputs(args)))
    return 0


def _report(args: argparse.Namespace) -> int:
    """`kiosk trials report [--site]`: one session's report, or the site's."""
    if not args.site:
        return _export(args)
    from kiosk.trials.site import site_report

    summary, per_kiosk = site_report(load_config(args.config), _outputs(args))
    _print_summary(summary)
    print("kiosks: " + ", ".join(f"{kiosk} ({count})" for kiosk, count in per_kiosk.items()))
    return 0
