"""`kiosk bench liveness`: the anti-spoofing check's cost per face, and what it refuses.

- the sample attacks (a printed photo, a tablet screen) and a live face, each checked on
  its own frame (:func:`kiosk.offline.liveness_row`);
- the cost of one check (crops included), for both models and each alone;
- over videos of live people, every face followed by the live pipeline's IoU matching
  (:func:`kiosk.live.tracking.match_boxes`, the ``[kiosk]`` IoU and missed-frame limits)
  through the :class:`~kiosk.live.liveness.LivenessMonitor`: how many checks it ran, how
  many live tracks it refused, and its cost per face frame.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import build
from kiosk.bench.data import shared_folder
from kiosk.config import KioskConfig
from kiosk.live.tracking import match_boxes
from kiosk.offline import liveness_row, read_photo
from models.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from models.antispoof import LivenessChecker
    from models.detector import Face, FaceDetector

SAMPLES = (
    ("printed_photo", "spoof_printed_photo.jpg"),
    ("tablet_screen", "spoof_tablet_screen.jpg"),
    ("live", "live_face.jpg"),
)


@dataclass
class _BenchTrack:
    """A face followed through a video, and what the liveness monitor said of it."""

    track_id: int
    box: NDArray[np.float32]
    last_frame: int
    frames: int = 0
    first_live: int | None = None
    not_live_frames: int = 0
    prompted: bool = False
    states: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)


class _Tracks:
    """Faces matched to the tracks seen within the last ``max_missed`` frames."""

    def __init__(self, iou_threshold: float, max_missed: int) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.all: list[_BenchTrack] = []

    def alive(self, frame_index: int) -> list[_BenchTrack]:
        return [t for t in self.all if frame_index - t.last_frame <= self.max_missed]

    def match(self, faces: list[Face], frame_index: int) -> list[tuple[_BenchTrack, Face]]:
        alive = self.alive(frame_index)
        pairs = match_boxes([t.box for t in alive], [f.box for f in faces], self.iou_threshold)
        matched = []
        for i, face in enumerate(faces):
            if i in pairs:
                track = alive[pairs[i]]
            else:
                track = _BenchTrack(len(self.all), face.box, frame_index)
                self.all.append(track)
            track.box, track.last_frame = face.box, frame_index
            matched.append((track, face))
        return matched


def bench_video(
    path: Path,
    config: KioskConfig,
    detector: FaceDetector,
    checker: LivenessChecker,
    max_frames: int,
) -> dict[str, Any]:
    """Every face of ``path`` through the liveness monitor, per track."""
    import cv2
    import numpy as np

    from kiosk.live.liveness import LivenessMonitor

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot open video {path}")
    monitor = LivenessMonitor(config.liveness, checker)
    tracks = _Tracks(config.kiosk.iou_threshold, config.kiosk.max_missed)
    frames = face_frames = single_refused = 0
    liveness_s = liveness_cpu_s = 0.0
    try:
        while not max_frames or frames < max_frames:
            ok, raw = capture.read()
            if not ok:
                break
            frame = np.asarray(raw, dtype=np.uint8)
            for track, face in tracks.match(detector.detect(frame), frames):
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
            monitor.retain(t.track_id for t in tracks.alive(frames))
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
            for t in tracks.all
        ],
    }


def cost_ms(
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


def summarize(config: KioskConfig, video_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the videos: checks, refusals and cost per face frame."""
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
    return {
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


def run_liveness(
    config: KioskConfig,
    *,
    antispoof: Path | None = None,
    videos: list[Path] | None = None,
    max_frames: int = 0,
    input_size: int | None = None,
    repeats: int = 200,
) -> dict[str, Any]:
    """The report of `kiosk bench liveness`; the samples default to the shared
    ``antispoof`` folder, the videos to every shared video."""
    from models.antispoof import LIVENESS_MODELS

    antispoof = antispoof or shared_folder("antispoof")
    videos = videos if videos else sorted(shared_folder("videos").glob("*.mp4"))
    samples = {kind: antispoof / name for kind, name in SAMPLES}
    images = {kind: read_photo(path) for kind, path in samples.items()}
    detector = build.detector(config, input_size=input_size)
    checker = build.liveness_checker(config)
    sample_rows: dict[str, dict[str, Any]] = {}
    faces: dict[str, Face] = {}
    for kind, image in images.items():
        found = detector.detect(image, mode="largest")
        if not found:
            raise UserError(f"no face found in {samples[kind]}")
        faces[kind] = found[0]
        sample_rows[kind] = liveness_row(samples[kind], 0, found[0], checker, image)
    live, live_face = images["live"], faces["live"]
    cost = {
        "both_models": cost_ms(checker, live, live_face, repeats, None),
        **{
            name: cost_ms(checker, live, live_face, repeats, index)
            for index, (name, _) in enumerate(LIVENESS_MODELS)
        },
    }
    video_rows = [bench_video(path, config, detector, checker, max_frames) for path in videos]
    return {
        "providers": checker.providers,
        "detector": {"name": detector.name, "input_size": detector.input_size},
        "liveness_config": config.liveness.model_dump(),
        "cost_ms_per_check": cost,  # one face, one check, crops included
        "samples": sample_rows,
        "attacks_refused": not sample_rows["printed_photo"]["live"]
        and not sample_rows["tablet_screen"]["live"],
        "live_sample_accepted": bool(sample_rows["live"]["live"]),
        "videos": video_rows,
        "summary": summarize(config, video_rows),
    }
