"""`kiosk bench churn --json PATH`: a door running while people are enrolled and deleted
at random (kiosk/bench/churn.py)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from kiosk.bench.data import clip_weights, load_average, shared_folder
from kiosk.config import load_config
from models.io import write_json_atomic


def register_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    churn = verbs.add_parser(
        "churn", help="a door running while people are enrolled and deleted at random"
    )
    churn.add_argument("--json", type=Path, required=True, help="write the results here")
    churn.add_argument(
        "--recognizer",
        choices=["embedding_gallery", "clip"],
        default="embedding_gallery",
        help="the door's recognizer (clip retrains in the background after each change)",
    )
    churn.add_argument("--people", type=int, default=50, help="people enrolled while it runs")
    churn.add_argument("--deletes", type=int, default=None, help="of them deleted (default: half)")
    churn.add_argument("--seed", type=int, default=0, help="seed of the order and the deletes")
    churn.add_argument("--photos", type=int, default=5, help="photos enrolled per person")
    churn.add_argument(
        "--interval", type=float, default=2.0, help="seconds between two changes of the store"
    )
    churn.add_argument(
        "--named-timeout",
        type=float,
        default=None,
        help="seconds after a Save to give up on naming them (default: 120, clip 600)",
    )
    churn.add_argument(
        "--shared", type=Path, default=None, help="shared data (default: $KIOSK_SHARED)"
    )
    churn.add_argument(
        "--note", default=None, help="recorded in the JSON (such as: the machine was shared)"
    )
    churn.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiosk.bench.churn import churn

    base = load_config(args.config)
    pretrained, _ = clip_weights(base) if args.recognizer == "clip" else ("none", "")
    before = load_average()
    report = churn(
        base,
        shared_folder("faces", args.shared) / "lfw_min10",
        kind=args.recognizer,
        pretrained=pretrained,
        people=args.people,
        deletes=args.deletes,
        seed=args.seed,
        photos=args.photos,
        interval_s=args.interval,
        named_timeout_s=args.named_timeout,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    results = {
        "command": "kiosk " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_before": before,
        **({"note": args.note} if args.note else {}),
        **report,
    }
    write_json_atomic(args.json, results)
    print(json.dumps(results["summary"], indent=2))
    return 0
