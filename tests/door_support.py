"""Helpers for the door-side tests: a person enrolled into a people store from a video."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from enroll.store import Consent, NewPhoto, PeopleStore, utc_now
from models.align import CLIP_SIZE, align_face
from models.detector import FaceDetector


def video_frames(video: Path, count: int, step: int = 1) -> Iterator[NDArray[np.uint8]]:
    """Every ``step``-th frame of a video, ``count`` of them."""
    capture = cv2.VideoCapture(str(video))
    try:
        for index in range(count * step):
            ok, frame = capture.read()
            assert ok, f"{video} has fewer than {count * step} frames"
            if index % step == 0:
                yield np.asarray(frame, dtype=np.uint8)
    finally:
        capture.release()


def enroll_from_video(
    store_dir: Path, name: str, video: Path, detector: FaceDetector, photos: int = 6
) -> None:
    """What the wizard saves: aligned 224 crops of the largest face, through the store API."""
    crops = []
    for frame in video_frames(video, photos * 4, step=8):
        faces = detector.detect(frame, mode="largest")
        if faces:
            crops.append(NewPhoto(align_face(frame, faces[0].kps, CLIP_SIZE), pose="front"))
        if len(crops) == photos:
            break
    assert len(crops) == photos, f"{video}: a face in only {len(crops)} sampled frames"
    with PeopleStore(store_dir) as store:
        store.add_person(name, crops, Consent("test", utc_now()))
