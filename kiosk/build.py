"""The one place the configuration becomes models: detector, recognizer, liveness, pipeline.

Every command, window and benchmark builds what it needs here, so a setting means the
same thing everywhere.

``[recognizer] kind = "store"`` (the default) builds an :class:`EmbeddingGallery` of
everyone in the people store (``[enroll] store_dir``) with
:func:`enroll.training.rebuild_gallery`: whoever the enrollment wizard saves reaches the
running kiosk within ``reload_poll_s``. The reload signal is the store's content, not
its files: ``(uid, name, photo count)`` of every person, read from the store's SQLite
database on each poll. File times would not do: SQLite in WAL mode writes to side files
and checkpoints at its own pace, and a rebuild itself writes (it caches embeddings).
``kind = "gallery"`` builds an :class:`EmbeddingGallery` from a folder holding one
folder of photos per person (the largest face of each photo). Both galleries embed with
``[recognizer] embedder``: MobileFaceNet, or CLIP's frozen image tower zero-shot
(:func:`gallery_embedder`). ``kind = "clip"`` loads a trained recognizer bundle through
:func:`clip_recognizer`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kiosk.config import KioskConfig
from kiosk.live.events import DoorHooks, EventLog, HookSettings
from kiosk.live.holder import NobodyEnrolled, RecognizerFactory, RecognizerHolder
from kiosk.live.liveness import LivenessMonitor
from kiosk.live.pipeline import LivePipeline
from kiosk.live.sources import FrameSource, open_source
from kiosk.live.tracking import Tracker, TrackerSettings, TrackVeto
from models import registry
from models.detector import FaceDetector
from models.errors import UserError
from models.io import ImageRefused, read_image, scan_people, split_images
from models.paths import user_cache_dir, user_data_dir
from models.recognition import Recognizer

if TYPE_CHECKING:
    from enroll.store import PeopleStore
    from kiosk.site.sync import SiteSync
    from models.antispoof import LivenessChecker
    from models.embedder import FaceEmbedder
    from models.train.finetune import TrainSettings

log = logging.getLogger(__name__)

MOBILEFACENET = "mobilefacenet_128d"


def model_dir(config: KioskConfig) -> Path:
    return registry.resolve_model_dir(config.models.dir)


def detector(
    config: KioskConfig, *, input_size: int | None = None, name: str | None = None
) -> FaceDetector:
    """The configured detector; ``input_size`` defaults to ``[detector] input_size``."""
    return FaceDetector.from_name(
        name or config.detector.name,
        model_dir(config),
        input_size=input_size or config.detector.input_size,
        threshold=config.detector.threshold,
        device=config.models.device,
        threads=config.models.threads,
    )


def liveness_checker(config: KioskConfig) -> LivenessChecker:
    """Both MiniFASNet models, whether or not ``[liveness] enabled``."""
    from models.antispoof import LivenessChecker

    return LivenessChecker.from_dir(
        model_dir(config), device=config.models.device, threads=config.models.threads
    )


def liveness_monitor(config: KioskConfig) -> LivenessMonitor | None:
    """The per-track liveness monitor, or None when ``[liveness] enabled = false``."""
    if not config.liveness.enabled:
        return None
    checker = liveness_checker(config)
    checker.warm_up()
    return LivenessMonitor(config.liveness, checker)


def train_settings(config: KioskConfig) -> TrainSettings:
    """How to finetune CLIP's text encoder: ``[train]``, ``[clip] prompt``, the device."""
    from models.train.finetune import TrainSettings

    t = config.train
    return TrainSettings(
        prompt=config.clip.prompt,
        epochs=t.epochs,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        batch_size=t.batch_size,
        seed=t.seed,
        test_fraction=t.test_fraction,
        min_images=t.min_images,
        max_classes_per_step=t.max_classes_per_step,
        trainable_layers=t.trainable_layers,
        train_logit_scale=t.train_logit_scale,
        subtract_null_prompt=t.subtract_null_prompt,
        angular_margin=t.angular_margin,
        device=config.models.device,
    )


def recognizer_path(config: KioskConfig) -> Path:
    """The configured gallery folder or bundle file, else its default in the data dir."""
    if config.recognizer.path is not None:
        return config.recognizer.path.expanduser()
    default = "gallery" if config.recognizer.kind == "gallery" else "recognizer.bundle"
    return user_data_dir() / default


def gallery_embedder(config: KioskConfig) -> FaceEmbedder:
    """The configured gallery embedder: MobileFaceNet, or CLIP's image tower as an ONNX
    file exported once into the user's cache dir (torch is needed only that once)."""
    if config.recognizer.embedder == "clip":
        from models.clip.embedder import ClipFaceEmbedder

        return ClipFaceEmbedder.load(
            config.clip.model,
            config.clip.pretrained,
            model_dir(config),
            user_cache_dir() / "clip",
            device=config.models.device,
            threads=config.models.threads,
        )
    from models.embedder import ArcFaceEmbedder

    return ArcFaceEmbedder(
        registry.model_path(MOBILEFACENET, model_dir(config)),
        device=config.models.device,
        threads=config.models.threads,
    )


def folder_gallery(
    folder: Path, detector: FaceDetector, embedder: FaceEmbedder, threshold: float
) -> Recognizer:
    """An embedding gallery over ``folder/<person>/<photo>`` (:func:`scan_people`); photos
    refused by :func:`read_image` or without a face are skipped, each logged with why."""
    from models.gallery import EmbeddingGallery

    if not folder.exists():
        log.info("gallery folder %s does not exist yet: nobody is enrolled", folder)
        return NobodyEnrolled()
    if not folder.is_dir():
        raise UserError(f"gallery {folder} is not a folder (expected one folder per person)")
    people, skipped = scan_people(folder)
    for item in skipped:
        log.warning("gallery: skipped %s: %s", item.path, item.reason)
    crops: dict[str, Sequence[NDArray[np.uint8]]] = {}
    for name, files in people.items():
        photos, _ = split_images(files)  # other files (notes, sidecars) are not photos
        for photo in photos:
            try:
                image = read_image(photo, where=photo.name)
            except ImageRefused as refused:
                log.warning("gallery: skipped %s: %s", photo, refused)
                continue
            faces = detector.detect(image, mode="largest")
            if not faces:
                log.warning("gallery: skipped %s: no face found", photo)
                continue
            crops[name] = [*crops.get(name, []), embedder.align(image, faces[0])]
    if not crops:
        log.info("gallery %s holds no usable photos: nobody is enrolled", folder)
        return NobodyEnrolled()
    return EmbeddingGallery.from_crops(embedder, crops, threshold=threshold)


def store_signature(store: PeopleStore) -> Hashable:
    """What changes when anyone is enrolled, renamed, deleted or given other photos."""
    return tuple((person.uid, person.name, person.photo_count) for person in store.people())


class StoreRecognizers:
    """Builds the gallery of a people store, kept open for the kiosk's lifetime."""

    def __init__(self, config: KioskConfig) -> None:
        from kiosk.site.replica import open_people

        self.embedder = gallery_embedder(config)
        self.store = open_people(config)  # a site kiosk's replica, else the plain store
        self.threshold = config.recognizer.gallery_threshold

    def signature(self) -> Hashable:
        return store_signature(self.store)

    def build(self) -> Recognizer:
        from enroll.training import rebuild_gallery

        gallery = rebuild_gallery(self.store, self.embedder, threshold=self.threshold)
        if not gallery.people:
            log.info("the people store %s is empty: nobody is enrolled", self.store.root)
            return NobodyEnrolled()
        return gallery

    def close(self) -> None:
        self.store.close()


def site_sync(config: KioskConfig) -> SiteSync | None:
    """A site kiosk's sync worker (started), or None without a ``[site]`` section.

    It keeps its own handle on the replica, pushes the door events of ``[events] dir``,
    and writes a CLIP bundle the site publishes to the recognizer's bundle path when
    ``[recognizer] kind = "clip"``. The first sync
    is awaited for up to the connect timeout, so a kiosk that was off during an erasure
    applies it before it names anyone."""
    if config.site is None:
        return None
    from enroll.keys import operator_key
    from kiosk.site.replica import ReplicaStore, open_people
    from kiosk.site.sync import SiteSync

    store = open_people(config)
    assert isinstance(store, ReplicaStore)
    bundle = recognizer_path(config) if config.recognizer.kind == "clip" else None
    events = (config.events.dir or user_data_dir() / "events") if config.events.enabled else None
    try:
        sync = SiteSync(
            config.site, store, bundle_path=bundle, events_dir=events, sealer_key=operator_key()
        )
    except BaseException:
        store.close()
        raise
    sync.start()
    sync.wait_started(config.site.connect_timeout_s + 1.0)
    return sync


def recognizer_holder(config: KioskConfig, site: SiteSync | None = None) -> RecognizerHolder:
    """The configured recognizer, watched for changes when ``[recognizer] reload``; on a
    site (``site``, from :func:`site_sync`) its names pass the replica's gate."""
    reload = config.recognizer.reload
    poll_s = config.recognizer.reload_poll_s
    policy = site.gate if site is not None else None

    def close_site() -> None:
        if site is not None:
            site.close()
            site.store.close()

    if config.recognizer.kind == "store":
        store = StoreRecognizers(config)

        def close() -> None:
            store.close()
            close_site()

        try:
            holder = RecognizerHolder(
                store.build,
                store.store.root if reload or site else None,
                poll_s,
                signature=store.signature,
                close=close,
                policy=policy,
            )
        except BaseException:
            close()
            raise
    else:
        watch = recognizer_path(config) if reload or site else None
        try:
            holder = RecognizerHolder(
                recognizer_factory(config), watch, poll_s, close=close_site, policy=policy
            )
        except BaseException:
            close_site()
            raise
    if site is not None:
        site.on_change = holder.check_now  # a pulled change is rebuilt now, not at the poll
    return holder


def clip_recognizer(config: KioskConfig, bundle: Path) -> Recognizer:
    """The finetuned CLIP recognizer from a bundle file (`kiosk train`), with the ONNX image
    tower cached beside it; the reject threshold is the config's ``[clip] threshold``."""
    from models.clip.classifier import ClipRecognizer

    if not bundle.exists():
        log.info("recognizer bundle %s does not exist yet: nobody is enrolled", bundle)
        return NobodyEnrolled()
    return ClipRecognizer.load(
        bundle,
        model_dir(config),
        backend="onnx",
        threshold=config.clip.threshold,
        device=config.models.device,
        threads=config.models.threads,
    )


def recognizer_factory(config: KioskConfig) -> RecognizerFactory:
    """A function that builds the configured recognizer afresh (called again on reload).

    A folder gallery's detector and embedder are loaded on the first build and kept:
    a reload re-reads the photos, not the models."""
    path = recognizer_path(config)
    if config.recognizer.kind == "clip":
        return lambda: clip_recognizer(config, path)

    @functools.cache
    def models() -> tuple[FaceDetector, FaceEmbedder]:
        return detector(config, input_size=config.kiosk.detector_input_size), gallery_embedder(
            config
        )

    def build() -> Recognizer:
        return folder_gallery(path, *models(), config.recognizer.gallery_threshold)

    return build


def live_pipeline(
    config: KioskConfig,
    *,
    source: str | FrameSource | None = None,
    factory: RecognizerFactory | None = None,
    veto: TrackVeto | None = None,
) -> LivePipeline:
    """The pipeline the config describes; ``source`` overrides ``[kiosk] source``."""
    live = config.kiosk
    if not isinstance(source, FrameSource):
        source = open_source(
            source if source is not None else live.source,
            loop=live.loop,
            realtime=live.realtime,
            retry_initial_s=live.retry_initial_s,
            retry_max_s=live.retry_max_s,
        )
    face_detector = detector(config, input_size=live.detector_input_size)
    face_detector.warm_up()
    site = site_sync(config) if factory is None else None
    holder = RecognizerHolder(factory) if factory is not None else recognizer_holder(config, site)
    tracker = Tracker(
        TrackerSettings(
            live.min_frames, live.window, live.iou_threshold, live.max_missed, live.reclassify_every
        ),
        veto=veto,
    )
    events = hooks = None
    if config.events.enabled:
        events = EventLog(config.events.dir or user_data_dir() / "events")
        hooks = DoorHooks(
            HookSettings(
                tuple(config.events.command),
                config.events.url,
                config.events.cooldown_s,
                config.events.hook_timeout_s,
            )
        )
    return LivePipeline(
        source,
        face_detector,
        holder,
        tracker,
        max_faces=live.max_faces,
        events=events,
        hooks=hooks,
        liveness=liveness_monitor(config),
    )
