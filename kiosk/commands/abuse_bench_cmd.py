"""`kiosk bench abuse --json PATH`: random kill -9s across the product's writes and hostile
inputs through the CLI (kiosk/bench/abuse.py)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from kiosk.bench.data import SHARED_ENV, load_average
from models.errors import UserError
from models.io import write_json_atomic


def register_verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    abuse = verbs.add_parser(
        "abuse", help="kill -9 at random across writes, and hostile inputs: what survives"
    )
    abuse.add_argument("--json", type=Path, required=True, help="write the results here")
    abuse.add_argument("--kills", type=int, default=100, help="kill -9s, spread over the writes")
    abuse.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    abuse.add_argument(
        "--ops",
        nargs="*",
        default=None,
        help="the writes to kill (default: enroll import train export events)",
    )
    abuse.add_argument("--no-hostile", action="store_true", help="only the kills")
    abuse.add_argument(
        "--clip-model",
        type=Path,
        default=None,
        help="open_clip config for the training kills (default: tests/data/kiosk-tiny-rn.json)",
    )
    abuse.add_argument(
        "--shared", type=Path, default=None, help=f"shared data (default: ${SHARED_ENV})"
    )
    abuse.add_argument("--work", type=Path, default=None, help="keep the drill's files here")
    abuse.add_argument(
        "--note", default=None, help="recorded in the JSON (such as: the machine was shared)"
    )
    abuse.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from kiosk.bench.abuse import OPS, TINY_CLIP, prepare, run_hostile, run_kills

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    ops = tuple(args.ops) if args.ops else OPS
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        raise UserError(f"unknown --ops {', '.join(unknown)}: choose from {', '.join(OPS)}")
    clip_model = args.clip_model or TINY_CLIP
    if "train" in ops and not clip_model.is_file():
        raise UserError(f"{clip_model} does not exist: pass --clip-model CONFIG.json")
    shared = args.shared or (Path(os.environ[SHARED_ENV]) if SHARED_ENV in os.environ else None)
    video = shared / "videos" / "solo_07.mp4" if shared is not None else None
    if video is not None and not video.is_file():
        video = None
    if shared is not None and (shared / "models").is_dir():
        # The cases that run the models (enroll --auto) find them where the tests do.
        os.environ.setdefault("KIOSK_MODEL_DIR", str(shared / "models"))
    started = load_average()
    with tempfile.TemporaryDirectory(prefix="kiosk-abuse-") as scratch:
        root = args.work or Path(scratch)
        results: dict[str, object] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_average_before": started,
            "command": "kiosk " + " ".join(sys.argv[1:]),
        }
        if args.note:
            results["note"] = args.note
        if args.kills:
            work = prepare(root / "kills", clip_model)
            results["kills"] = run_kills(work, args.kills, ops=ops, seed=args.seed, log=log)
        if not args.no_hostile:
            results["hostile"] = run_hostile(
                root / "hostile", video=video, models=video is not None, log=log
            )
        results["load_average_after"] = load_average()
    write_json_atomic(args.json, results)
    print(json.dumps({k: v for k, v in results.items() if k != "hostile"}, indent=2)[:4000])
    return 0
