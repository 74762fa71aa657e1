"""`kiosk bench quantize`: the int8 image models against their fp32 originals.

Quality can only be judged on a trained network with real crops (models/quantize.py),
so it is measured on:

- MobileFaceNet, always: the first ``people`` people of LFW (``faces/lfw_min10``), up to
  ``photos`` photos each; each person's first two photos are the gallery, the others
  the probes. The int8 model is calibrated on the gallery crops, as the door calibrates
  on the enrolled people's crops. The figure is the share of probes whose nearest gallery
  person is the same under both models (``top1_agreement``), with each model's own
  identification accuracy and the cosine between a crop's two embeddings;
- CLIP's image tower (``[clip] model``, RN50) in the same way, with its image features of
  224 crops, whenever RN50.pt is in the model directory. Without it (these machines) the
  untrained tower is quantized and timed (its cost is the real one), and its quality is
  reported as not measured, with why.

Speed: milliseconds per face at batch 1, the fp32 and int8 sessions run in turn on the
same crops, the median of ``reps`` runs for each thread count.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kiosk import build
from kiosk.bench.data import clip_weights, load_average
from kiosk.config import KioskConfig
from models.errors import UserError
from models.io import ImageRefused, read_image, scan_people, split_images

GOAL_AGREEMENT = 0.99
GOAL_RN50_SPEEDUP = 1.7
FACE_SET = "lfw_min10"


def face_crops(
    folder: Path, people: int, photos: int, config: KioskConfig
) -> tuple[list[NDArray[np.uint8]], list[NDArray[np.uint8]], list[str], NDArray[np.bool_]]:
    """ArcFace 112 and CLIP 224 crops of the largest face of each photo, each photo's
    person, and which photos are the gallery (each person's first two with a face)."""
    from models.align import align_arcface, align_for_clip

    detector = build.detector(config, input_size=320)
    arcface: list[NDArray[np.uint8]] = []
    clip: list[NDArray[np.uint8]] = []
    labels: list[str] = []
    gallery: list[bool] = []
    found, _ = scan_people(folder)
    for name, files in list(found.items())[:people]:
        kept = 0
        for photo in split_images(files)[0][:photos]:
            try:
                image = read_image(photo)
            except ImageRefused:
                continue
            faces = detector.detect(image, mode="largest")
            if not faces:
                continue
            arcface.append(align_arcface(image, faces[0].kps))
            clip.append(align_for_clip(image, faces[0].kps))
            labels.append(name)
            gallery.append(kept < 2)
            kept += 1
    enrolled = np.asarray(gallery, dtype=bool)
    if enrolled.sum() < 2 or (~enrolled).sum() < 1:
        raise UserError(f"too few faces found in {folder} to compare int8 with fp32")
    return arcface, clip, labels, enrolled


def per_face_ms(
    fp32: Path, int8: Path, blobs: Sequence[NDArray[np.float32]], threads: int, reps: int
) -> dict[str, Any]:
    """Median ms of one face through each model, the two run in turn on the same crop."""
    from models.runtime import create_session

    sessions = {
        "fp32": create_session(fp32, device="cpu", threads=threads),
        "int8": create_session(int8, device="cpu", threads=threads),
    }
    names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for warm in range(3):
        for key, session in sessions.items():
            session.run(None, {names[key]: blobs[warm % len(blobs)]})
    for rep in range(reps):
        for key, session in sessions.items():
            started = time.perf_counter()
            session.run(None, {names[key]: blobs[rep % len(blobs)]})
            times[key].append((time.perf_counter() - started) * 1000.0)
    fp32_ms, int8_ms = (float(np.median(times[k])) for k in ("fp32", "int8"))
    return {
        "threads": threads,
        "fp32_ms": round(fp32_ms, 1),
        "int8_ms": round(int8_ms, 1),
        "speedup": round(fp32_ms / int8_ms, 2),
        "fp32_p10_ms": round(float(np.percentile(times["fp32"], 10)), 1),
        "int8_p10_ms": round(float(np.percentile(times["int8"], 10)), 1),
    }


def compare(
    fp32: Path,
    out: Path,
    blobs: Sequence[NDArray[np.float32]],
    labels: Sequence[str],
    gallery: NDArray[np.bool_],
    *,
    threads: Sequence[int],
    reps: int,
    judge: bool,
) -> dict[str, Any]:
    """Quantize ``fp32`` calibrated on the gallery blobs, then its speed and (``judge``)
    its agreement with fp32."""
    from models.clip.classifier import INT8_CALIBRATION
    from models.quantize import agreement, embed, int8_recipe, quantize_int8

    calibration = [b for b, g in zip(blobs, gallery, strict=True) if g][:INT8_CALIBRATION]
    started = time.perf_counter()
    int8 = quantize_int8(fp32, out, calibration)
    report: dict[str, Any] = {
        "recipe": int8_recipe(),
        "calibration_crops": len(calibration),
        "quantize_s": round(time.perf_counter() - started, 1),
        "fp32_mb": round(fp32.stat().st_size / 2**20, 1),
        "int8_mb": round(int8.stat().st_size / 2**20, 1),
        "speed": [per_face_ms(fp32, int8, blobs, n, reps) for n in threads],
    }
    if judge:
        threads_all = max(threads)
        result = agreement(
            embed(fp32, blobs, threads_all), embed(int8, blobs, threads_all), labels, gallery
        )
        report["quality"] = result.as_dict()
    return report


def run_quantize(
    config: KioskConfig,
    faces: Path,
    *,
    people: int = 60,
    photos: int = 10,
    threads: Sequence[int] = (2,),
    reps: int = 30,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """The report of `kiosk bench quantize` (the module docstring says what it measures)."""
    from models.clip.towers import build_clip, export_image_tower, to_blob
    from models.embedder import arcface_blob
    from models.registry import model_path

    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": load_average()},
        "faces": faces.name,
        "people": people,
        "photos_per_person": photos,
        "reps": reps,
    }
    progress("bench quantize: finding the faces ...")
    arcface, clip, labels, gallery = face_crops(faces, people, photos, config)
    report["images"] = len(labels)
    report["gallery_images"] = int(gallery.sum())
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        work = Path(tmp)
        progress("bench quantize: MobileFaceNet ...")
        mfn = model_path(build.MOBILEFACENET, build.model_dir(config))
        report["mobilefacenet"] = compare(
            mfn,
            work / "mobilefacenet.int8.onnx",
            [arcface_blob([c]) for c in arcface],
            labels,
            gallery,
            threads=threads,
            reps=reps,
            judge=True,
        )
        pretrained, why_not = clip_weights(config)
        progress(f"bench quantize: CLIP {config.clip.model} ({pretrained}) ...")
        model, identity = build_clip(config.clip.model, pretrained, build.model_dir(config))
        tower = export_image_tower(model.visual, work / f"clip-{identity.key}.onnx")
        del model
        rn50 = compare(
            tower,
            work / "clip.int8.onnx",
            [to_blob([c]) for c in clip],
            labels,
            gallery,
            threads=threads,
            reps=reps,
            judge=pretrained == "openai",
        )
        rn50["model"] = f"{config.clip.model} ({pretrained})"
        if pretrained != "openai":
            rn50["quality"] = None
            rn50["quality_reason"] = (
                "not measured: an untrained tower's features cannot judge int8 (they are "
                f"nearly identical, any noise swamps them); {why_not}"
            )
        report["clip"] = rn50
    report["machine"]["load_average_at_end"] = load_average()
    report["goals"] = quantize_goals(report)
    return report


def quantize_goals(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals: top-1 agreement >= 99% on a trained network, RN50 int8 >= 1.7x."""

    def agrees(model: dict[str, Any]) -> bool | None:
        quality = model.get("quality")
        return None if not quality else quality["top1_agreement"] >= GOAL_AGREEMENT

    speedups = [s["speedup"] for s in report["clip"]["speed"]]
    return {
        "mobilefacenet": {"top1_agreement_at_least_99": agrees(report["mobilefacenet"])},
        "clip": {
            "top1_agreement_at_least_99": agrees(report["clip"]),
            "int8_at_least_1.7x_faster": min(speedups) >= GOAL_RN50_SPEEDUP,
        },
    }
