"""`kiosk bench core|live|liveness|ui --json PATH`: the benchmarks, each writing JSON.

- ``core``: per-stage latency and training cost of the CLIP recognizer
  (kiosk/bench/core.py); each training run is a child process (``train-one``).
- ``live``: the live pipeline's fps, latency and memory, CLIP in fp32 and int8, and the
  door's lifecycle: from Save to named, and after a delete (kiosk/bench/live.py).
- ``quantize``: int8 against fp32, agreement and speed (kiosk/bench/quantize.py).
- ``liveness``: the anti-spoofing check's cost and refusals (kiosk/bench/liveness.py).
- ``ui``: the window's drawing cost per frame (kiosk/ui/bench.py).
- ``abuse``: random kill -9s across the writes, and hostile inputs (kiosk/bench/abuse.py).
- ``churn``: a door running while people are enrolled and deleted at random
  (kiosk/bench/churn.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.bench.core import TRAIN_RUNS, run_core, train_one
from kiosk.bench.data import shared_folder
from kiosk.commands import (
    abuse_bench_cmd,
    bench_churn,
    bench_live,
    bench_quantize,
    liveness_cmd,
    site_bench_cmd,
    ui_bench_cmd,
)
from kiosk.config import load_config
from models.io import write_json_atomic


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks that write JSON")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    core = verbs.add_parser("core", help="stage latency and training time/memory of the core")
    core.add_argument("--json", type=Path, required=True, help="write the results here")
    core.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="shared data folder (default: $KIOSK_SHARED or ../shared)",
    )
    core.add_argument("--frames", type=int, default=20, help="frames per video")
    core.add_argument(
        "--people",
        type=int,
        nargs="*",
        default=sorted(TRAIN_RUNS),
        choices=sorted(TRAIN_RUNS),
        help="training runs (people counts)",
    )
    core.add_argument("--threads", type=int, default=2, help="CPU threads for every model")
    core.add_argument(
        "--max-photos", type=int, default=0, help="training: photos per person (0 = all)"
    )
    core.add_argument("--pretrained", choices=["openai", "none"], default=None)
    core.set_defaults(handler=_core)
    one = verbs.add_parser("train-one", help="(internal) one of bench core's training runs")
    one.add_argument("people_count", type=int, choices=sorted(TRAIN_RUNS))
    one.add_argument("out", type=Path)
    one.add_argument("--shared", type=Path, required=True)
    one.add_argument("--threads", type=int, default=2)
    one.add_argument("--max-photos", type=int, default=0)
    one.add_argument("--pretrained", choices=["openai", "none"], default=None)
    one.set_defaults(handler=_train_one)
    bench_live.register_verb(verbs)
    bench_quantize.register_verb(verbs)
    liveness_cmd.register_bench_verb(verbs)
    ui_bench_cmd.register_verb(verbs)
    site_bench_cmd.register_verb(verbs)
    abuse_bench_cmd.register_verb(verbs)
    bench_churn.register_verb(verbs)


def _train_one(args: argparse.Namespace) -> int:
    """One training run (a child of `bench core`): writes its report to ``out``."""
    train_one(
        load_config(args.config),
        args.people_count,
        args.out,
        args.shared,
        threads=args.threads,
        max_photos=args.max_photos,
        pretrained=args.pretrained,
    )
    return 0


def _core(args: argparse.Namespace) -> int:
    results = run_core(
        load_config(args.config),
        args.config,
        shared_folder("faces", args.shared).parent,
        args.people,
        frames=args.frames,
        threads=args.threads,
        max_photos=args.max_photos,
        pretrained=args.pretrained,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    write_json_atomic(args.json, results)
    print(json.dumps({"stage_ms": results["stage_ms"], "train": results["train"]}, indent=2))
    return 0
