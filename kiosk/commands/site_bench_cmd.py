"""`kiosk bench site --json PATH`: the site benchmark (kiosk/bench/site.py); `--faults N`
runs the fault drill instead."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from kiosk.bench.data import load_average
from models.io import write_json_atomic


def register_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    site = verbs.add_parser(
        "site", help="a site on a throwaway PostgreSQL: replication latency, idle cost, size"
    )
    site.add_argument("--json", type=Path, required=True, help="write the results here")
    site.add_argument("--kiosks", type=int, default=5, help="kiosk processes")
    site.add_argument("--people", type=int, default=1000, help="people in the registry")
    site.add_argument("--photos", type=int, default=3, help="crops per person")
    site.add_argument("--repeats", type=int, default=5, help="enrollments and erasures timed")
    site.add_argument("--idle-s", type=float, default=60.0, help="idle window measured")
    site.add_argument("--poll-s", type=float, default=30.0, help="the kiosks' [site] poll_s")
    site.add_argument(
        "--faults", type=int, default=0, help="run the fault drill with N rounds instead"
    )
    site.add_argument(
        "--retrain",
        type=Path,
        default=None,
        metavar="PEOPLE_DIR",
        help="instead: time one enrollment to a retrained CLIP bundle at every kiosk, on "
        "a folder per person (e.g. $KIOSK_SHARED/faces/att_orl: 40 people)",
    )
    site.add_argument("--clip-model", default="RN50", help="with --retrain")
    site.add_argument("--pretrained", choices=["openai", "none"], default="none")
    site.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiosk.bench.site import run_benchmark, run_faults, run_retrain

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = load_average()
    if args.retrain is not None:
        results = run_retrain(
            args.retrain,
            kiosks=args.kiosks,
            model=args.clip_model,
            pretrained=args.pretrained,
            log=log,
        )
    elif args.faults:
        results = run_faults(rounds=args.faults, kiosks=args.kiosks, log=log)
    else:
        results = run_benchmark(
            kiosks=args.kiosks,
            people=args.people,
            photos=args.photos,
            repeats=args.repeats,
            idle_s=args.idle_s,
            poll_s=args.poll_s,
            log=log,
        )
    results |= {
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "load_average_start": started,
        "load_average_end": load_average(),
    }
    write_json_atomic(args.json, results)
    print(json.dumps(results, indent=2))
    return 0
