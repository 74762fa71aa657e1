"""`kiosk bench core|live|liveness|ui --json PATH`: the benchmarks, each writing JSON.

- ``core``: per-stage latency and training cost of the CLIP recognizer (here). Training
  runs each happen in a child process, so each run's peak memory (the child's
  ``ru_maxrss``) is its own.
- ``live``: the live pipeline's fps, latency and memory (kiosk/commands/bench_live.py).
- ``liveness``: the anti-spoofing check's cost and refusals (kiosk/commands/liveness_cmd.py).
- ``ui``: the window's drawing cost per frame (kiosk/commands/ui_bench_cmd.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kiosk.bench.data import load_average, shared_folder
from kiosk.commands import bench_live, liveness_cmd, site_bench_cmd, ui_bench_cmd
from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic

# (people, face set, min photos): ORL subsets, LFW people with >= 10 photos, LFW singles.
TRAIN_RUNS = {
    10: ("att_orl", 2),
    40: ("att_orl", 2),
    158: ("lfw_min10", 2),
    1000: ("lfw_singles", 1),
}


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
    core.set_defaults(handler=run_core)
    one = verbs.add_parser("train-one", help=argparse.SUPPRESS)
    one.add_argument("people_count", type=int)
    one.add_argument("out", type=Path)
    one.add_argument("--shared", type=Path, required=True)
    one.add_argument("--threads", type=int, default=2)
    one.add_argument("--max-photos", type=int, default=0)
    one.add_argument("--pretrained", choices=["openai", "none"], default=None)
    one.set_defaults(handler=run_train_one)
    bench_live.register_verb(verbs)
    liveness_cmd.register_bench_verb(verbs)
    ui_bench_cmd.register_verb(verbs)
    site_bench_cmd.register_verb(verbs)


def run_train_one(args: argparse.Namespace) -> int:
    """One training run (a child of `bench core`): writes its report to ``out``."""
    import torch

    from kiosk.build import train_settings
    from models import registry
    from models.clip.bundle import save_bundle
    from models.detector import FaceDetector
    from models.io import scan_people
    from models.train.bundle import train_recognizer

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    face_set, min_images = TRAIN_RUNS[args.people_count]
    people, skipped = scan_people(args.shared / "faces" / face_set)
    limit = args.max_photos or None
    people = {name: files[:limit] for name, files in list(people.items())[: args.people_count]}
    model_dir = registry.resolve_model_dir(config.models.dir)
    detector = FaceDetector.from_name(
        config.detector.name,
        model_dir,
        input_size=config.train.detector_input_size,
        threads=args.threads,
    )
    settings = train_settings(config)
    settings = type(settings)(**{**settings.__dict__, "min_images": min_images})
    bundle, report = train_recognizer(
        people,
        detector,
        config.clip.model,
        args.pretrained or config.clip.pretrained,
        model_dir,
        settings,
        cache_root=None,
        skipped=skipped,
    )
    save_bundle(bundle, args.out.with_suffix(".npz"))
    report.pop("skipped_items")
    write_json_atomic(args.out, {"set": face_set, "max_photos": args.max_photos, **report})
    return 0


def _train_run(people: int, args: argparse.Namespace, shared: Path, work: Path) -> dict[str, Any]:
    out = work / f"train_{people}.json"
    command = [sys.executable, "-m", "kiosk"]
    if args.config:
        command += ["--config", str(args.config)]
    command += [
        "bench",
        "train-one",
        str(people),
        str(out),
        "--shared",
        str(shared),
        "--threads",
        str(args.threads),
        "--max-photos",
        str(args.max_photos),
    ]
    if args.pretrained:
        command += ["--pretrained", args.pretrained]
    log = work / f"train_{people}.log"
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as stderr:
        child = subprocess.Popen(command, stderr=stderr)
        # wait4 gives this child's own resource usage: its peak RSS, not the maximum
        # over all children so far as getrusage(RUSAGE_CHILDREN) would.
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0 or not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise UserError(f"training run for {people} people failed:\n{tail}")
    report = json.loads(out.read_text(encoding="utf-8"))
    return {
        "people": report["people"],
        "images": report["usable_images"],
        "seconds": report["seconds"],
        "feature_seconds": report["feature_seconds"],
        "finetune_seconds": report["finetune_seconds"],
        "process_seconds": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "train_accuracy": report["train_accuracy"],
        "test_accuracy": report["test_accuracy"],
        "test_accuracy_before": report["test_accuracy_before"],
        "set": report["set"],
        "max_photos": report["max_photos"],
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def stage_latency(
    bundle_path: Path, shared: Path, frames_per_video: int, threads: int, config_path: Path | None
) -> dict[str, Any]:
    """Median ms per stage over the solo videos; towers are timed per face."""
    import cv2
    import numpy as np

    from models import registry
    from models.clip.classifier import ClipRecognizer, class_probabilities, onnx_tower_path
    from models.clip.towers import OnnxImageTower, TorchImageTower, export_image_tower, to_blob
    from models.detector import FaceDetector
    from models.recognition import decide

    config = load_config(config_path)
    model_dir = registry.resolve_model_dir(config.models.dir)
    recognizer = ClipRecognizer.load(bundle_path, model_dir, backend="torch", threads=threads)
    bundle = recognizer.bundle
    assert isinstance(recognizer.tower, TorchImageTower)
    torch_tower = recognizer.tower
    onnx_path = export_image_tower(
        torch_tower.visual, onnx_tower_path(bundle_path, bundle.identity)
    )
    onnx_tower = OnnxImageTower(onnx_path, threads=threads)
    detector = FaceDetector.from_name(
        config.detector.name, model_dir, input_size=config.detector.input_size, threads=threads
    )
    times: dict[str, list[float]] = {
        k: []
        for k in ("decode", "detect", "align", "image_tower_torch", "image_tower_onnx", "classify")
    }
    max_diff = 0.0
    videos = sorted((shared / "videos").glob("solo_*.mp4"))
    if not videos:
        raise UserError(f"no solo_*.mp4 videos in {shared / 'videos'}")
    detector.warm_up()
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        for _ in range(frames_per_video):
            t0 = time.perf_counter()
            ok, frame = capture.read()
            t1 = time.perf_counter()
            if not ok:
                break
            times["decode"].append((t1 - t0) * 1e3)
            faces = detector.detect(np.asarray(frame, dtype=np.uint8), mode="largest")
            t2 = time.perf_counter()
            times["detect"].append((t2 - t1) * 1e3)
            if not faces:
                continue
            crop = recognizer.align(np.asarray(frame, dtype=np.uint8), faces[0])
            t3 = time.perf_counter()
            blob = to_blob([crop])
            feat_torch = torch_tower.encode(blob)
            t4 = time.perf_counter()
            feat_onnx = onnx_tower.encode(blob)
            t5 = time.perf_counter()
            probs = class_probabilities(
                feat_onnx, bundle.feature_mean, recognizer.text_embeddings, bundle.logit_scale
            )
            decide(probs[0], bundle.people, recognizer.threshold)
            t6 = time.perf_counter()
            times["align"].append((t3 - t2) * 1e3)
            times["image_tower_torch"].append((t4 - t3) * 1e3)
            times["image_tower_onnx"].append((t5 - t4) * 1e3)
            times["classify"].append((t6 - t5) * 1e3)
            max_diff = max(max_diff, float(np.abs(feat_torch - feat_onnx).max()))
        capture.release()
    return {
        "stage_ms": {k: _median(v) for k, v in times.items()},
        "faces": len(times["align"]),
        "frames": len(times["decode"]),
        "onnx_vs_torch_max_abs_diff": max_diff,
        "providers": {
            "detector": detector.providers,
            "image_tower_onnx": onnx_tower.providers,
            "image_tower_torch": torch_tower.providers,
        },
        "detector": f"{detector.name}@{detector.input_size}",
    }


def run_core(args: argparse.Namespace) -> int:
    shared = shared_folder("faces", args.shared).parent
    results: dict[str, Any] = {
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_start": load_average(),
        "train": [],
    }
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        work = Path(tmp)
        runs = sorted(set(args.people) | {10})
        for people in runs:
            print(f"bench: training {people} people ...", file=sys.stderr, flush=True)
            results["train"].append(_train_run(people, args, shared, work))
        print("bench: stage latency ...", file=sys.stderr, flush=True)
        results.update(
            stage_latency(work / "train_10.npz", shared, args.frames, args.threads, args.config)
        )
    results["train"] = [
        r for r in results["train"] if r["people"] in args.people or r["people"] == 10
    ]
    results["load_average_end"] = load_average()
    write_json_atomic(args.json, results)
    print(json.dumps({"stage_ms": results["stage_ms"], "train": results["train"]}, indent=2))
    return 0
