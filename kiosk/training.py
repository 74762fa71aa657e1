"""The one way the kiosk trains a CLIP recognizer bundle: photos per person -> a bundle.

`kiosk train`, `kiosk bench core` (each training run) and `kiosk bench live` all train
here, over :func:`models.train.bundle.train_recognizer`, with the detector made by
:mod:`kiosk.build` and the settings from the configuration (``[train]``, ``[clip]``).
The photos come as a mapping person -> image files, so they may come from a folder
(:func:`people_in_folder`) or from anywhere else.

:func:`train_from_store` is the product's own training: from the people store, warm
started from the bundle in use, run in the background by the kiosk
(:mod:`kiosk.live.retrain`) whenever the people change.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kiosk import build
from kiosk.config import KioskConfig
from kiosk.live.retrain import Retrainer
from models.errors import UserError
from models.io import Skipped, atomic_writer, scan_people
from models.paths import user_cache_dir
from models.words import counted

if TYPE_CHECKING:
    from enroll.store import PeopleStore
    from models.clip.bundle import RecognizerBundle
    from models.embedder import FaceEmbedder

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


@dataclass(frozen=True)
class StoreTraining:
    """What a training from the people store did."""

    trained: bool  # False when the bundle was already trained from this store state
    message: str
    version: int | None
    report: dict[str, Any]


Progress = Callable[[float, str, float | None], None]  # fraction, what, seconds left


def train_from_store(
    config: KioskConfig,
    store: PeopleStore,
    *,
    out: Path | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
) -> StoreTraining:
    """Retrain the CLIP bundle from everyone in the people store, warm-started from the
    bundle in use, unless that bundle was already trained from the store as it is.

    The features come from the people store's aligned crops (cached in the store under
    the image tower's key: they go when their person is deleted); the people are known by
    their opaque ids, the prompts use their names. The bundle records the store state it
    was trained from, so a kiosk at start knows whether it is stale.
    """
    import time

    from models.clip.bundle import save_bundle
    from models.clip.classifier import onnx_tower_path
    from models.clip.towers import OnnxImageTower, build_clip, encode_crops, export_image_tower
    from models.train.bundle import DetectorRecord, train_from_features
    from models.train.features import FaceSet
    from models.train.finetune import WarmStart

    path = out or build.bundle_path(config)
    report = progress or (lambda fraction, what, eta: None)
    started = time.perf_counter()
    with build.bundle_lock(path):
        state = store.state()
        previous = build.current_bundle(path)
        if previous is not None and previous.source.get("digest") == state.digest:
            return StoreTraining(False, "the recognizer is up to date", previous.version, {})
        if len(state.people) < 2:
            raise UserError(
                f"the CLIP recognizer needs at least 2 enrolled people; the store has "
                f"{len(state.people)}: enroll another"
            )
        report(0.02, "loading CLIP", None)
        model, identity = build_clip(
            config.clip.model, config.clip.pretrained, build.model_dir(config)
        )
        tower_file = onnx_tower_path(path, identity)
        if not tower_file.is_file():
            report(0.05, "preparing the image tower (once)", None)
            export_image_tower(model.visual, tower_file)
        tower = OnnxImageTower(tower_file, device="cpu", threads=config.models.threads)
        report(0.1, "reading the enrolled photos", None)
        features = store.embeddings_by_person(
            f"clip-features:{identity.key}", functools.partial(encode_crops, tower)
        )
        del tower  # the session's memory, before the finetuning needs its own
        settings = build.train_settings(config)
        warm = None
        if (
            previous is not None
            and previous.text_state  # none after an erasure: it was learnt from them too
            and previous.identity == identity
            and previous.settings.trainable_layers == settings.trainable_layers
        ):
            warm = WarmStart(previous.text_state, previous.logit_scale)
        epoch_started = time.perf_counter()

        def on_epoch(done: int, total: int) -> None:
            per_epoch = (time.perf_counter() - epoch_started) / done
            report(
                0.2 + 0.75 * done / total,
                f"learning the names: {done} of {total}",
                per_epoch * (total - done),
            )

        try:
            bundle, summary = train_from_features(
                FaceSet(features=features, sources={uid: [] for uid in features}),
                model,
                identity,
                settings,
                DetectorRecord(config.detector.name, config.kiosk.detector_input_size),
                threshold=config.clip.threshold,
                names=state.names,
                warm_start=warm,
                source={"kind": "store", "digest": state.digest},
                version=(previous.version + 1) if previous is not None else 1,
                started=started,
                log=log,
                on_epoch=on_epoch,
            )
        except ValueError as error:
            raise UserError(f"the recognizer was not retrained: {error}") from None
        try:
            save_bundle(bundle, path)
        except OSError as error:
            raise UserError(f"cannot write the bundle {path}: {error.strerror}") from error
    people = len(bundle.people)
    message = f"the recognizer knows {counted(people, 'person')}"
    report(1.0, message, 0.0)
    return StoreTraining(True, message, bundle.version, summary)


UpdateProgress = Callable[[float, str], None]  # fraction done, what to tell the operator


class RecognizerUpdate(Protocol):
    """What the wizard runs after saving someone, until the new person can be named.
    ``run`` returns what to tell the operator; setting ``cancel`` stops waiting (the
    person stays saved)."""

    def run(self, progress: UpdateProgress, cancel: threading.Event) -> str: ...


class GalleryRefresh:
    """The embedding gallery: the new person's embeddings, computed and cached now."""

    def __init__(self, store: PeopleStore, embedder: FaceEmbedder, threshold: float) -> None:
        self.store = store
        self.embedder = embedder
        self.threshold = threshold

    def run(self, progress: UpdateProgress, cancel: threading.Event) -> str:
        from enroll.training import TrainingCancelled, rebuild_gallery

        def report(done: int, total: int) -> None:
            progress(done / max(total, 1), f"updating the recognizer: {done} of {total} people")

        try:
            gallery = rebuild_gallery(
                self.store, self.embedder, threshold=self.threshold, progress=report, cancel=cancel
            )
        except TrainingCancelled:
            return "saved; the recognizer is rebuilt the next time the kiosk starts"
        people = counted(len(gallery.people), "person")
        return f"the recognizer knows {people}: the door names them now"


class ClipRetrain:
    """The CLIP recognizer: the retrain in the background, followed until it ends."""

    def __init__(self, retrainer: Retrainer, poll_s: float = 0.2) -> None:
        self.retrainer = retrainer
        self.poll_s = poll_s

    def run(self, progress: UpdateProgress, cancel: threading.Event) -> str:
        self.retrainer.request()
        while not cancel.wait(self.poll_s):
            status = self.retrainer.status()
            if status.state in ("done", "failed", "idle") and not status.pending:
                if status.state == "failed":
                    return (
                        f"saved, but the recognizer could not learn the new face yet: "
                        f"{status.message}. The kiosk tries again when it starts"
                    )
                return f"{status.message}: the door names the new person now"
            eta = f"; about {status.eta_s:.0f} s left" if status.eta_s else ""
            progress(status.progress, f"teaching the recognizer the new face{eta}")
        return "saved; the recognizer keeps learning the new face in the background"


def recognizer_update(
    config: KioskConfig, store: PeopleStore, retrainer: Retrainer | None = None
) -> RecognizerUpdate:
    """The update the configured recognizer needs after an enrollment: a gallery refresh,
    or (CLIP, fusion) the background retrain, ``retrainer`` or a new one."""
    if config.recognizer.kind == "embedding_gallery":
        return GalleryRefresh(
            store, build.gallery_embedder(config), config.recognizer.gallery_threshold
        )
    return ClipRetrain(retrainer if retrainer is not None else build.store_retrainer(config))
