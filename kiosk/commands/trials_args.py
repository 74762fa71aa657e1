"""The arguments of `kiosk trials` (its handlers are in trials_cmd.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

RECOGNIZERS = ("clip", "gallery", "fusion")  # kiosk.trials.runs.RECOGNIZERS


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """`kiosk trials` and its verbs; the parsers (the command's, the verbs' by name), to be
    given handlers."""
    parser = subparsers.add_parser(
        "trials",
        help="five-second deployment trials (no verb: the live operator console)",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="console: camera index, video file, stream URL or image folder (default: config's)",
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="trials SQLite file (default: the user's data dir)"
    )
    parser.add_argument(
        "--operator",
        default=None,
        help="who runs the trials, for the reports' header (default: your login name)",
    )
    verbs = parser.add_subparsers(dest="verb", required=False, metavar="VERB")

    sim = verbs.add_parser(
        "simulate",
        help="run trials over video clips, one per participant (the deployment benchmark)",
    )
    sim.add_argument(
        "--videos",
        type=Path,
        default=None,
        help="folder of the clips (default: $KIOSK_SHARED/videos)",
    )
    sim.add_argument(
        "--enrolled",
        nargs="+",
        default=None,
        metavar="CLIP",
        help="clips of enrolled participants (default: solo_01 ... solo_06)",
    )
    sim.add_argument(
        "--visitors",
        nargs="*",
        default=None,
        metavar="CLIP",
        help="clips of people not enrolled (default: solo_07 solo_08 hamilton)",
    )
    sim.add_argument(
        "--enroll-seconds",
        type=float,
        default=1.0,
        help="enroll from this many first seconds of each enrolled clip",
    )
    sim.add_argument("--duration", type=float, default=None, help="trial window, seconds")
    sim.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame")
    sim.add_argument(
        "--leave-one-out",
        action="store_true",
        help="also run each enrolled clip as a stranger against a recognizer built without them",
    )
    sim.add_argument(
        "--recognizer",
        choices=RECOGNIZERS,
        action="append",
        default=None,
        help="clip: CLIP finetuned on the enrollment photos ([train], [clip]); gallery: the "
        "MobileFaceNet embedding gallery; fusion: CLIP confirmed by the gallery. Repeat it "
        "to compare recognizers over the same trials in one JSON and one report "
        "(default: gallery)",
    )
    sim.add_argument(
        "--pretrained",
        choices=("openai", "none", "auto"),
        default=None,
        help="CLIP weights: openai (RN50.pt in the model directory), none (untrained: every "
        "output is labelled UNTRAINED), auto (openai when RN50.pt is there, else none); "
        "default: [clip] pretrained",
    )
    sim.add_argument(
        "--epochs", type=int, default=None, help="CLIP finetuning epochs (default: [train])"
    )
    sim.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="reject threshold, with one --recognizer (default: the recognizer's; clip and "
        "fusion [clip] threshold 0.8 softmax, gallery [recognizer] gallery_threshold 0.5 cosine)",
    )
    sim.add_argument("--detector-size", type=int, default=320, help="detector input size")
    sim.add_argument(
        "--db",
        type=Path,
        default=argparse.SUPPRESS,  # keeps a --db given before the verb
        help="save the session in this SQLite file (default: in memory only)",
    )
    sim.add_argument(
        "--operator",
        default=argparse.SUPPRESS,  # keeps an --operator given before the verb
        help="who runs the trials, for the reports' header (default: your login name)",
    )
    _add_outputs(sim)

    sessions = verbs.add_parser(
        "sessions", help="list the sessions in a trials database (a table, dates in local time)"
    )
    sessions.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trials SQLite file")
    sessions.add_argument(
        "--json", action="store_true", help="print JSON (epoch seconds and local dates)"
    )

    export = verbs.add_parser("export", help="export a saved session (CSV, JSON, HTML report)")
    export.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trials SQLite file")
    export.add_argument("--session", type=int, default=None, help="session id (default: latest)")
    _add_outputs(export)

    report = verbs.add_parser(
        "report", help="a report of a saved session, or with --site of every kiosk's trials"
    )
    report.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trials SQLite file")
    report.add_argument("--session", type=int, default=None, help="session id (default: latest)")
    report.add_argument(
        "--site", action="store_true", help="every kiosk's trials from the site registry"
    )
    _add_outputs(report)
    return parser, dict(verbs.choices)


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, help="write metrics and trials as JSON")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per trial")
    parser.add_argument("--report", type=Path, default=None, help="write an HTML report")
    parser.add_argument(
        "--target-fpr",
        type=float,
        default=None,
        help="FPR the threshold analysis looks for (default 0.02)",
    )
