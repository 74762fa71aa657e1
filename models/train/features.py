"""Image features of people's photos for training: detected, aligned, run through the frozen
image tower once, and cached on disk by file content and tower identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.align import align_for_clip
from models.clip.identity import ClipIdentity
from models.clip.towers import ImageTower, encode_crops
from models.detector import FaceDetector
from models.io import (
    ImageRefused,
    Skipped,
    atomic_writer,
    decode_image,
    read_image_bytes,
    remove_stale_temps,
    split_images,
)

Log = Callable[[str], None]


@dataclass
class FaceSet:
    """Image features per person, and what was skipped on the way."""

    features: dict[str, NDArray[np.float32]]  # display name -> (photos, dim)
    sources: dict[str, list[str]]
    skipped: list[Skipped] = field(default_factory=list)
    images: int = 0


class FeatureCache:
    """Image features on disk, one ``.npy`` per (model identity, detection setup, file),
    each written atomically; opening the cache removes what a killed run left."""

    def __init__(self, root: Path, identity: ClipIdentity, setup: str) -> None:
        self.folder = root / identity.key / setup
        remove_stale_temps(self.folder)

    def get(self, digest: str) -> NDArray[np.float32] | None:
        path = self.folder / f"{digest}.npy"
        try:
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
        except (OSError, ValueError, EOFError):
            return None

    def put(self, digest: str, feature: NDArray[np.float32]) -> None:
        with atomic_writer(self.folder / f"{digest}.npy") as stream:
            np.save(stream, feature)


_DIGEST = re.compile(r"[0-9a-f]{64}")


def forget_features(root: Path, digests: Iterable[str]) -> int:
    """Remove every cached feature of these photos (by content digest, as
    :class:`FeatureCache` names them) under ``root``, whatever tower or detection setup
    made it: an erasure. The number of files removed."""
    wanted = {digest for digest in digests if _DIGEST.fullmatch(digest)}
    if not wanted or not root.is_dir():
        return 0
    removed = 0
    for folder, _, files in os.walk(root):
        for file in files:
            if file.endswith(".npy") and file[: -len(".npy")] in wanted:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, file))
                    removed += 1
    return removed


def extract_features(
    people: dict[str, list[Path]],
    detector: FaceDetector,
    tower: ImageTower,
    cache: FeatureCache | None,
    align_margin: float = 0.0,
    log: Log | None = None,
) -> FaceSet:
    """Detect the largest face of every photo, align it, run the image tower (once).

    Crops go through the tower 32 at a time, so memory holds 32 crops, not every photo.
    """
    faceset = FaceSet(features={}, sources={})
    pending: list[tuple[str, NDArray[np.uint8]]] = []  # digest, crop
    computed: dict[str, NDArray[np.float32]] = {}
    found: dict[str, list[tuple[str, NDArray[np.float32] | None, str]]] = {}

    def flush() -> None:
        features = encode_crops(tower, [crop for _, crop in pending])
        for (digest, _), feature in zip(pending, features, strict=True):
            computed[digest] = feature
            if cache:
                cache.put(digest, feature)
        pending.clear()

    for name, files in people.items():
        rows = found.setdefault(name, [])
        faceset.images += len(files)
        photos, others = split_images(files)
        faceset.skipped.extend(others)
        for path in photos:
            try:
                data = read_image_bytes(path, where=path.name)
            except ImageRefused as refused:
                faceset.skipped.append(Skipped(str(path), str(refused)))
                continue
            digest = hashlib.sha256(data).hexdigest()
            cached = cache.get(digest) if cache else None
            if cached is not None:
                rows.append((str(path), cached, digest))
                continue
            try:
                image = decode_image(data, path.name)
            except ImageRefused as refused:
                faceset.skipped.append(Skipped(str(path), str(refused)))
                continue
            faces = detector.detect(image, mode="largest")
            if not faces:
                faceset.skipped.append(Skipped(str(path), "no face found"))
                continue
            rows.append((str(path), None, digest))
            pending.append((digest, align_for_clip(image, faces[0].kps, align_margin)))
            if len(pending) == 32:
                flush()
    if pending:
        flush()
    if log:
        log(f"image tower: {len(computed)} new faces ({faceset.images} photos)")
    for name, rows in found.items():
        vectors = [vec if vec is not None else computed[digest] for _, vec, digest in rows]
        if vectors:
            faceset.features[name] = np.stack(vectors).astype(np.float32)
            faceset.sources[name] = [src for src, _, _ in rows]
    return faceset
