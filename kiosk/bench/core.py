"""`kiosk bench core`: per-stage latency and training cost of the CLIP recognizer.

Training runs each happen in a child process (`kiosk bench train-one`, :func:`train_one`),
so each run's peak memory (the child's ``ru_maxrss``) is its own. Stage latency is
timed on the 10-people bundle over the shared solo videos; towers are timed per face.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kiosk import build
from kiosk.bench.data import load_average
from kiosk.config import KioskConfig
from kiosk.training import save_trained_bundle, train_bundle
from models.errors import UserError
from models.io import scan_people, write_json_atomic

# (people, face set, min photos): ORL subsets, LFW people with >= 10 photos, LFW singles.
TRAIN_RUNS = {
    10: ("att_orl", 2),
    40: ("att_orl", 2),
    158: ("lfw_min10", 2),
    1000: ("lfw_singles", 1),
}
STAGE_BUNDLE_PEOPLE = 10  # stage latency is timed on this run's bundle


def train_one(
    config: KioskConfig,
    people_count: int,
    out: Path,
    shared: Path,
    *,
    threads: int,
    max_photos: int = 0,
    pretrained: str | None = None,
) -> None:
    """One training run of :data:`TRAIN_RUNS`: its report to ``out``, its bundle beside."""
    face_set, min_images = TRAIN_RUNS[people_count]
    people, skipped = scan_people(shared / "faces" / face_set)
    limit = max_photos or None
    people = {name: files[:limit] for name, files in list(people.items())[:people_count]}
    bundle, report = train_bundle(
        config,
        people,
        pretrained=pretrained,
        threads=threads,
        overrides={"min_images": min_images},
        skipped=skipped,
    )
    save_trained_bundle(bundle, out.with_suffix(".npz"))
    report.pop("skipped_items")
    write_json_atomic(out, {"set": face_set, "max_photos": max_photos, **report})


def _train_run(
    people: int,
    shared: Path,
    work: Path,
    config_path: Path | None,
    threads: int,
    max_photos: int,
    pretrained: str | None,
) -> dict[str, Any]:
    """``kiosk bench train-one`` in a child process: its report and its own peak RSS."""
    out = work / f"train_{people}.json"
    command = [sys.executable, "-m", "kiosk"]
    if config_path:
        command += ["--config", str(config_path)]
    command += ["bench", "train-one", str(people), str(out), "--shared", str(shared)]
    command += ["--threads", str(threads), "--max-photos", str(max_photos)]
    if pretrained:
        command += ["--pretrained", pretrained]
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
    config: KioskConfig, bundle_path: Path, shared: Path, frames_per_video: int, threads: int
) -> dict[str, Any]:
    """Median ms per stage over the solo videos; towers are timed per face."""
    import cv2
    import numpy as np

    from models.clip.classifier import ClipRecognizer, class_probabilities, onnx_tower_path
    from models.clip.towers import OnnxImageTower, TorchImageTower, export_image_tower, to_blob
    from models.recognition import decide

    videos = sorted((shared / "videos").glob("solo_*.mp4"))
    if not videos:
        raise UserError(f"no solo_*.mp4 videos in {shared / 'videos'}")
    config = build.with_models(config, threads=threads)
    model_dir = build.model_dir(config)
    recognizer = ClipRecognizer.load(bundle_path, model_dir, backend="torch", threads=threads)
    bundle = recognizer.bundle
    assert isinstance(recognizer.tower, TorchImageTower)
    torch_tower = recognizer.tower
    onnx_path = export_image_tower(
        torch_tower.visual, onnx_tower_path(bundle_path, bundle.identity)
    )
    onnx_tower = OnnxImageTower(onnx_path, threads=threads)
    detector = build.detector(config)
    times: dict[str, list[float]] = {
        k: []
        for k in ("decode", "detect", "align", "image_tower_torch", "image_tower_onnx", "classify")
    }
    max_diff = 0.0
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


def run_core(
    config: KioskConfig,
    config_path: Path | None,
    shared: Path,
    people: Sequence[int],
    *,
    frames: int,
    threads: int,
    max_photos: int = 0,
    pretrained: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """The training runs for ``people`` (each in a child process, given the same config
    file ``config_path``), then stage latency on the 10-people bundle."""
    results: dict[str, Any] = {
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average_start": load_average(),
        "train": [],
    }
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        work = Path(tmp)
        for count in sorted(set(people) | {STAGE_BUNDLE_PEOPLE}):
            progress(f"bench: training {count} people ...")
            results["train"].append(
                _train_run(count, shared, work, config_path, threads, max_photos, pretrained)
            )
        progress("bench: stage latency ...")
        bundle = work / f"train_{STAGE_BUNDLE_PEOPLE}.npz"
        results.update(stage_latency(config, bundle, shared, frames, threads))
    results["train"] = [
        r for r in results["train"] if r["people"] in people or r["people"] == STAGE_BUNDLE_PEOPLE
    ]
    results["load_average_end"] = load_average()
    return results
