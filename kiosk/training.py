"""The one way the kiosk trains a CLIP recognizer bundle: photos per person -> a bundle.

`kiosk train`, `kiosk bench core` (each training run) and `kiosk bench live` all train
here, over :func:`models.train.bundle.train_recognizer`, with the detector made by
:mod:`kiosk.build` and the settings from the configuration (``[train]``, ``[clip]``).
The photos come as a mapping person -> image files, so they may come from a folder
(:func:`people_in_folder`) or from anywhere else.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import build
from kiosk.config import KioskConfig
from models.errors import UserError
from models.io import Skipped, atomic_writer, scan_people
from models.paths import user_cache_dir

if TYPE_CHECKING:
    from models.clip.bundle import RecognizerBundle

Log = Callable[[str], None]


def feature_cache_dir() -> Path:
    """Where `kiosk train` keeps the image tower's features between runs."""
    return user_cache_dir() / "clip_features"


def people_in_folder(folder: Path) -> tuple[dict[str, list[Path]], list[Skipped]]:
    """``folder/<person>/<photo>``: the photos per person and the folders left out."""
    try:
        people, skipped = scan_people(folder)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    if not people:
        raise UserError(f"{folder} has no person folders (expected {folder}/<name>/*.jpg)")
    return people, skipped


def train_bundle(
    config: KioskConfig,
    people: Mapping[str, Sequence[Path]],
    *,
    pretrained: str | None = None,
    detector: str | None = None,
    threads: int = 0,
    overrides: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    skipped: Sequence[Skipped] = (),
    log: Log | None = None,
) -> tuple[RecognizerBundle, dict[str, Any]]:
    """A bundle finetuned on ``people`` (name -> photos) and its report.

    ``pretrained`` and ``detector`` (a name) default to the config's; ``threads`` (0 =
    the config's, all cores) bounds torch and the detector; ``overrides`` replace
    fields of the training settings (``epochs``, ``min_images``, ...); ``cache_dir``
    keeps the features (and the exported image tower) between runs, None keeps
    nothing. When fewer than two people have enough usable photos, a :class:`UserError`
    says so and nothing is trained (the skipped photos are logged first).
    """
    from models.train.bundle import train_recognizer

    if "{name}" not in config.clip.prompt:
        raise UserError(f"the [clip] prompt {config.clip.prompt!r} has no {{name}} placeholder")
    if threads:
        import torch

        torch.set_num_threads(threads)
        config = build.with_models(config, threads=threads)
    settings = dataclasses.replace(build.train_settings(config), **(overrides or {}))
    face_detector = build.detector(
        config, input_size=config.train.detector_input_size, name=detector
    )
    try:
        return train_recognizer(
            {name: list(photos) for name, photos in people.items()},
            face_detector,
            config.clip.model,
            pretrained or config.clip.pretrained,
            build.model_dir(config),
            settings,
            threshold=config.clip.threshold,
            align_margin=config.clip.align_margin,
            cache_root=cache_dir,
            skipped=skipped,
            log=log,
        )
    except ValueError as error:
        if log is not None:
            for item in skipped:
                log(f"skipped {item.path}: {item.reason}")
        raise UserError(f"nothing written: {error}") from None


def save_trained_bundle(bundle: RecognizerBundle, out: Path, cache_dir: Path | None = None) -> Path:
    """Write ``bundle`` to ``out``; with the ``cache_dir`` it was trained with, also put
    the image tower exported there where :class:`ClipRecognizer` looks for it, so
    loading it does not export the tower again (the same file, slower)."""
    from models.clip.bundle import save_bundle
    from models.clip.classifier import onnx_tower_path

    try:
        save_bundle(bundle, out)
    except OSError as error:
        raise UserError(f"cannot write the bundle {out}: {error.strerror}") from error
    exported = cache_dir / bundle.identity.key / "image_tower.onnx" if cache_dir else None
    if exported is not None and exported.is_file():
        with (
            exported.open("rb") as tower,
            atomic_writer(onnx_tower_path(out, bundle.identity)) as copy,
        ):
            shutil.copyfileobj(tower, copy)
    return out
