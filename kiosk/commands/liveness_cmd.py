"""`kiosk liveness check IMAGE...`, and the `kiosk bench liveness --json PATH` verb."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.bench.data import SHARED_ENV, shared_folder
from kiosk.config import KioskConfig, load_config
from models import registry
from models.errors import UserError
from models.io import write_json_atomic

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from models.antispoof import LivenessChecker
    from models.detector import Face, FaceDetector


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


def _models(args: argparse.Namespace) -> tuple[KioskConfig, FaceDetector, LivenessChecker]:
    from models.antispoof import LivenessChecker
    from models.detector import FaceDetector

    config = load_config(args.config)
    model_dir = args.model_dir or registry.resolve_model_dir(config.models.dir)
    detector = FaceDetector.from_name(
        config.detector.name,
        model_dir,
        input_size=args.input_size or config.detector.input_size,
        threshold=config.detector.threshold,
        device=config.models.device,
        threads=config.models.threads,
    )
    checker = LivenessChecker.from_dir(
        model_dir, device=config.models.device, threads=config.models.threads
    )
    return config, detector, checker


def _read_image(path: Path) -> NDArray[np.uint8]:
    import cv2
    import numpy as np

    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read {path} as an image (corrupt or not an image file)")
    return np.asarray(image, dtype=np.uint8)


def _face_row(
    path: Path, index: int, face: Face, checker: LivenessChecker, image: Any
) -> dict[str, Any]:
    score = checker.check(image, face)
    return {
        "image": str(path),
        "face": index,
        "box": [round(float(v), 1) for v in face.box],
        "live": score.is_live,
        "liveness": round(score.live, 4),
        "probs": [round(p, 4) for p in score.probs],
    }


def _check(args: argparse.Namespace) -> int:
    images = [(path, _read_image(path)) for path in args.images]
    _, detector, checker = _models(args)
    for path, image in images:
        faces = detector.detect(image)
        if not faces:
            print(json.dumps({"image": str(path), "face": None, "live": None}))
        for index, face in enumerate(faces):
            print(json.dumps(_face_row(path, index, face, checker, image)))
    return 0


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _BenchTrack:
    """A face followed through a video by greedy IoU matching (bench only)."""

    track_id: int
    box: list[float]
    last_frame: int
    frames: int = 0
    first_live: int | None = None
    not_live_frames: int = 0
    prompted: bool = False
    states: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)


def _match_tracks(
    tracks: list[_BenchTrack], faces: Sequence[Face], frame_index: int, next_id: int
) -> tuple[list[tuple[_BenchTrack, Face]], int]:
    """Greedy IoU matching; the live pipeline's tracker replaces this once merged."""
    live = [t for t in tracks if frame_index - t.last_frame <= 10]
    pairs = sorted(
        (
            (_iou(t.box, f.box.tolist()), ti, fi)
            for ti, t in enumerate(live)
            for fi, f in enumerate(faces)
        ),
        reverse=True,
    )
    used_t: set[int] = set()
    used_f: set[int] = set()
    matched: list[tuple[_BenchTrack, Face]] = []
    for overlap, ti, fi in pairs:
        if overlap < 0.3 or ti in used_t or fi in used_f:
            continue
        used_t.add(ti)
        used_f.add(fi)
        matched.append((live[ti], faces[fi]))
    for fi, face in enumerate(faces):
        if fi not in used_f:
            track = _BenchTrack(next_id, face.box.tolist(), frame_index)
            tracks.append(track)
            matched.append((track, face))
            next_id += 1
    for track, face in matched:
        track.box = face.box.tolist()
        track.last_frame = frame_index
    return matched, next_id


def _bench_video(
    path: Path,
    config: KioskConfig,
    detector: FaceDetector,
    checker: LivenessChecker,
    max_frames: int,
) -> dict[str, Any]:
    import cv2
    import numpy as np

    from kiosk.live.liveness import LivenessMonitor

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}")
    monitor = LivenessMonitor(config.liveness, checker)
    tracks: list[_BenchTrack] = []
    next_id = 0
    frames = face_frames = single_refused = 0
    liveness_s = liveness_cpu_s = 0.0
    try:
        while not max_frames or frames < max_frames:
            ok, raw = capture.read()
            if not ok:
                break
            frame = np.asarray(raw, dtype=np.uint8)
            faces = detector.detect(frame)
            matched, next_id = _match_tracks(tracks, faces, frames, next_id)
            for track, face in matched:
                start, start_cpu = time.perf_counter(), time.process_time()
                verdict = monitor.update(track.track_id, frame, face)
                liveness_s += time.perf_counter() - start
                liveness_cpu_s += time.process_time() - start_cpu
                face_frames += 1
                track.frames += 1
                if verdict.frame_score is not None and not verdict.frame_score.is_live:
                    single_refused += 1
                if verdict.state == "live" and track.first_live is None:
                    track.first_live = track.frames
                track.not_live_frames += verdict.state == "not_live"
                track.prompted |= verdict.prompt is not None
                track.states.append(verdict.state)
                track.sizes.append(face.size)
            monitor.retain(t.track_id for t in tracks if frames - t.last_frame <= 10)
            frames += 1
    finally:
        capture.release()
    return {
        "video": path.name,
        "frames": frames,
        "face_frames": face_frames,
        "checks": monitor.checks,
        "checks_refused": single_refused,
        "liveness_ms_per_face_frame": 1000 * liveness_s / face_frames if face_frames else None,
        "liveness_cpu_ms_per_face_frame": (
            1000 * liveness_cpu_s / face_frames if face_frames else None
        ),
        "tracks": [
            {
                "track": t.track_id,
                "frames": t.frames,
                "final_state": t.states[-1],
                "first_live_frame": t.first_live,
                "not_live_frames": t.not_live_frames,
                "prompted": t.prompted,
                "median_face_px": round(statistics.median(t.sizes), 1),
                "judged_frames": sum(size >= config.liveness.min_face_px for size in t.sizes),
            }
            for t in tracks
        ],
    }


def _cost_ms(
    checker: LivenessChecker, image: Any, face: Face, repeats: int, model: int | None
) -> dict[str, float]:
    """Milliseconds for one face's check (crops included): all models, or only ``model``.

    ``cpu_median`` is the process's CPU time per check: unlike wall time it does not
    grow when other programs share the cores.
    """
    checker.warm_up()
    wall, cpu = [], []
    for _ in range(max(1, repeats)):
        start, start_cpu = time.perf_counter(), time.process_time()
        checker.check(image, face, model)
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    wall.sort()
    return {
        "median": round(statistics.median(wall), 3),
        "p90": round(wall[int(0.9 * (len(wall) - 1))], 3),
        "min": round(wall[0], 3),
        "cpu_median": round(statistics.median(cpu), 3),
        "repeats": len(wall),
    }


def _bench(args: argparse.Namespace) -> int:
    antispoof = args.antispoof or shared_folder("antispoof")
    videos = args.videos if args.videos else sorted(shared_folder("videos").glob("*.mp4"))
    samples = {
        kind: antispoof / name
        for kind, name in (
            ("printed_photo", "spoof_printed_photo.jpg"),
            ("tablet_screen", "spoof_tablet_screen.jpg"),
            ("live", "live_face.jpg"),
        )
    }
    images = {kind: _read_image(path) for kind, path in samples.items()}
    config, detector, checker = _models(args)
    from models.antispoof import LIVENESS_MODELS

    sample_rows: dict[str, dict[str, Any]] = {}
    for kind, image in images.items():
        faces = detector.detect(image, mode="largest")
        if not faces:
            raise UserError(f"no face found in {samples[kind]}")
        sample_rows[kind] = _face_row(samples[kind], 0, faces[0], checker, image)
    live_face = detector.detect(images["live"], mode="largest")[0]
    cost = {
        "both_models": _cost_ms(checker, images["live"], live_face, args.repeats, None),
        **{
            name: _cost_ms(checker, images["live"], live_face, args.repeats, index)
            for index, (name, _) in enumerate(LIVENESS_MODELS)
        },
    }

    video_rows = [_bench_video(path, config, detector, checker, args.max_frames) for path in videos]
    face_frames = sum(v["face_frames"] for v in video_rows)
    checks = sum(v["checks"] for v in video_rows)
    tracks = [t for v in video_rows for t in v["tracks"]]
    min_frames = config.liveness.min_frames
    # A track can be judged once it had min_frames faces large enough to check.
    judged = [t for t in tracks if t["judged_frames"] >= min_frames]
    too_small = [t for t in tracks if t["frames"] >= min_frames and t not in judged]
    not_live_frames = sum(t["not_live_frames"] for t in tracks)
    liveness_ms, liveness_cpu_ms = (
        sum(v[key] * v["face_frames"] for v in video_rows if v["face_frames"])
        for key in ("liveness_ms_per_face_frame", "liveness_cpu_ms_per_face_frame")
    )
    summary: dict[str, Any] = {
        "videos": len(video_rows),
        "face_frames": face_frames,
        "checks": checks,
        "check_refusal_rate": (
            sum(v["checks_refused"] for v in video_rows) / checks if checks else None
        ),
        "frame_not_live_rate": not_live_frames / face_frames if face_frames else None,
        "tracks": len(tracks),
        "tracks_judged": len(judged),
        "tracks_too_small": len(too_small),
        "tracks_refused": sum(t["first_live_frame"] is None for t in judged),
        "tracks_ending_not_live": sum(t["final_state"] == "not_live" for t in tracks),
        "tracks_prompted": sum(t["prompted"] for t in tracks),
        "liveness_ms_per_face_frame": liveness_ms / face_frames if face_frames else None,
        "liveness_cpu_ms_per_face_frame": liveness_cpu_ms / face_frames if face_frames else None,
    }
    result = {
        "providers": checker.providers,
        "detector": {"name": detector.name, "input_size": detector.input_size},
        "liveness_config": config.liveness.model_dump(),
        "cost_ms_per_check": cost,  # one face, one check, crops included
        "samples": sample_rows,
        "attacks_refused": not sample_rows["printed_photo"]["live"]
        and not sample_rows["tablet_screen"]["live"],
        "live_sample_accepted": bool(sample_rows["live"]["live"]),
        "videos": video_rows,
        "summary": summary,
    }
    write_json_atomic(args.json, result)
    costs = {f"{name}_ms": row["median"] for name, row in cost.items()}
    print(json.dumps({"json": str(args.json), **summary, **costs}))
    return 0
