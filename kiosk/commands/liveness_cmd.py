"""`kiosk liveness check IMAGE...`, and the `kiosk bench liveness --json PATH` verb."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kiosk.bench.data import SHARED_ENV
from kiosk.build import with_models
from kiosk.config import load_config
from models.io import write_json_atomic


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("liveness", help="anti-spoofing: check images")
    parser.add_argument("--model-dir", type=Path, default=None, help="override the model dir")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    check_p = verbs.add_parser(
        "check", help="one JSON line per face: live or not (single frame, the authors' rule)"
    )
    check_p.add_argument("images", nargs="+", type=Path, help="image files")
    check_p.add_argument("--input-size", type=int, default=None, help="detector input size")
    check_p.set_defaults(handler=_check)


def register_bench_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kiosk bench liveness` (registered by kiosk/commands/bench_cmd.py)."""
    bench_p = verbs.add_parser("liveness", help="liveness cost per face, attacks and live refused")
    bench_p.add_argument("--model-dir", type=Path, default=None, help="override the model dir")
    bench_p.add_argument("--json", type=Path, required=True, help="write the results here")
    bench_p.add_argument(
        "--videos",
        type=Path,
        nargs="*",
        default=None,
        help=f"videos of live people (default: ${SHARED_ENV}/videos/*.mp4)",
    )
    bench_p.add_argument(
        "--antispoof",
        type=Path,
        default=None,
        help=f"folder with the sample attacks and live face (default: ${SHARED_ENV}/antispoof)",
    )
    bench_p.add_argument("--max-frames", type=int, default=0, help="frames per video, 0 = all")
    bench_p.add_argument("--input-size", type=int, default=None, help="detector input size")
    bench_p.add_argument("--repeats", type=int, default=200, help="timed checks for the cost")
    bench_p.set_defaults(handler=_bench)


def _check(args: argparse.Namespace) -> int:
    from kiosk.offline import liveness_rows

    config = with_models(load_config(args.config), dir=args.model_dir)
    for row in liveness_rows(config, args.images, args.input_size):
        print(json.dumps(row))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from kiosk.bench.liveness import run_liveness

    result = run_liveness(
        with_models(load_config(args.config), dir=args.model_dir),
        antispoof=args.antispoof,
        videos=args.videos,
        max_frames=args.max_frames,
        input_size=args.input_size,
        repeats=args.repeats,
    )
    write_json_atomic(args.json, result)
    costs = {f"{name}_ms": row["median"] for name, row in result["cost_ms_per_check"].items()}
    print(json.dumps({"json": str(args.json), **result["summary"], **costs}))
    return 0
