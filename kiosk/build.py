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

import contextlib
import functools
import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kiosk.config import KioskConfig
from kiosk.live.events import DoorHooks, EventLog, HookSettings
from kiosk.live.holder import (
    NamingPolicy,
    NobodyEnrolled,
    RecognizerFactory,
    RecognizerHolder,
    path_signature,
)
from kiosk.live.liveness import LivenessMonitor
from kiosk.live.pipeline import LivePipeline
from kiosk.live.retrain import Retrainer
from kiosk.live.sources import FrameSource, open_source
from kiosk.live.tracking import Tracker, TrackerSettings, TrackVeto
from models import registry
from models.detector import FaceDetector
from models.errors import UserError
from models.io import ImageRefused, read_image, scan_people, split_images
from models.paths import user_cache_dir, user_data_dir
from models.recognition import Recognizer

if TYPE_CHECKING:
    from kiosk.site.sync import SiteSync
    from models.antispoof import LivenessChecker
    from models.clip.bundle import RecognizerBundle
    from models.clip.classifier import ClipRecognizer
    from models.embedder import FaceEmbedder
    from models.train.finetune import TrainSettings

log = logging.getLogger(__name__)

MOBILEFACENET = "mobilefacenet_128d"


def model_dir(config: KioskConfig) -> Path:
    return registry.resolve_model_dir(config.models.dir)


def with_models(config: KioskConfig, **fields: object) -> KioskConfig:
    """The config with ``[models]`` fields replaced (``dir``, ``threads``): a command's
    or a benchmark's override; a field given as None keeps the config's."""
    given = {name: value for name, value in fields.items() if value is not None}
    return config.model_copy(update={"models": config.models.model_copy(update=given)})


def with_store(config: KioskConfig, store_dir: Path | None) -> KioskConfig:
    """The config with ``[enroll] store_dir`` replaced (a command's ``--store``; None keeps it)."""
    if store_dir is None:
        return config
    enroll = config.enroll.model_copy(update={"store_dir": store_dir})
    return config.model_copy(update={"enroll": enroll})


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


def photo_aligner(config: KioskConfig) -> Callable[[NDArray[np.uint8]], NDArray[np.uint8] | None]:
    """Detect the largest face of a photo and align it as the people store keeps crops
    (None when there is no face). The detector is loaded on the first photo.

    At 320, not the live view's size: portrait photos' large faces are missed at 640.
    """
    from models.align import CLIP_SIZE, align_face

    @functools.cache
    def photo_detector() -> FaceDetector:
        return detector(config, input_size=320)

    def align(image: NDArray[np.uint8]) -> NDArray[np.uint8] | None:
        faces = photo_detector().detect(image, mode="largest")
        return align_face(image, faces[0].kps, CLIP_SIZE) if faces else None

    return align


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


def bundle_path(config: KioskConfig) -> Path:
    """The CLIP bundle the configuration names, else ``<data dir>/recognizer.bundle``."""
    if config.recognizer.bundle is not None:
        return config.recognizer.bundle.expanduser()
    return user_data_dir() / "recognizer.bundle"


@contextlib.contextmanager
def bundle_lock(path: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the bundle's lock: two writers of one bundle never overlap (the door's
    retrain and a wizard's in another process, an erasure). Waits for the other one."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path.with_name(path.name + ".lock")), timeout=timeout_s):
            yield
    except Timeout:
        raise UserError(
            f"another training of {path} has held its lock for {timeout_s:.0f} s; "
            "if no training runs, remove the .lock file beside the bundle"
        ) from None


def current_bundle(path: Path) -> RecognizerBundle | None:
    """The bundle at ``path``, or None when there is none yet or it cannot be read."""
    from models.clip.bundle import BundleError, load_bundle

    if not path.exists():
        return None
    try:
        return load_bundle(path)
    except BundleError as error:
        log.warning("the bundle in use cannot be read: %s", error)
        return None


def forget_in_bundle(path: Path, person_ids: set[str]) -> bool:
    """Drop people from the bundle file at once (an erasure, before any retrain): the file
    no longer holds their names or text embeddings, nor the tuned text weights learnt
    from them (the next training starts cold). True when it changed."""
    from models.clip.bundle import save_bundle

    if not path.exists():
        return False
    with bundle_lock(path):
        bundle = current_bundle(path)
        if bundle is None or not person_ids & set(bundle.person_ids):
            return False
        save_bundle(bundle.without(person_ids), path)
    return True


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


class StoreGallery:
    """The embedding gallery of a people store, kept open for the kiosk's lifetime."""

    def __init__(self, config: KioskConfig) -> None:
        from kiosk.site.replica import open_people

        self.embedder = gallery_embedder(config)
        self.store = open_people(config)  # a site kiosk's replica, else the plain store
        self.threshold = config.recognizer.gallery_threshold

    def signature(self) -> Hashable:
        return self.store.state().digest

    def build(self) -> Recognizer:
        from enroll.training import rebuild_gallery

        gallery = rebuild_gallery(self.store, self.embedder, threshold=self.threshold)
        if not gallery.people:
            log.info("the people store %s is empty: nobody is enrolled", self.store.root)
            return NobodyEnrolled()
        return gallery

    def close(self) -> None:
        self.store.close()


def site_sync(config: KioskConfig, on_erased: Callable[[], None] | None = None) -> SiteSync | None:
    """A site kiosk's sync worker (started), or None without a ``[site]`` section.

    It keeps its own handle on the replica, pushes the door events of ``[events] dir``,
    and writes a CLIP bundle the site publishes to the recognizer's bundle path when
    ``[recognizer] kind`` is ``clip`` or ``fusion``. The first sync
    is awaited for up to the connect timeout, so a kiosk that was off during an erasure
    applies it before it names anyone. ``on_erased`` is called (on the sync's thread)
    after a sync erased someone from the replica: see :class:`SiteSync`."""
    if config.site is None:
        return None
    from enroll.keys import operator_key
    from kiosk.site.replica import ReplicaStore, open_people
    from kiosk.site.sync import SiteSync

    store = open_people(config)
    assert isinstance(store, ReplicaStore)
    bundle = bundle_path(config) if config.recognizer.kind != "embedding_gallery" else None
    events = events_dir(config) if config.events.enabled else None
    try:
        sync = SiteSync(
            config.site,
            store,
            bundle_path=bundle,
            events_dir=events,
            on_erased=on_erased,
            sealer_key=operator_key(),
        )
    except BaseException:
        store.close()
        raise
    sync.start()
    sync.wait_started(config.site.connect_timeout_s + 1.0)
    return sync


class StoreClip:
    """The finetuned CLIP recognizer (or the fusion) of a people store.

    It keeps the bundle true to the store: people deleted or purged since the bundle was
    trained are dropped from it, on disk too, before anything else; renamed people are
    shown under their new names; and a bundle not trained from the store's current state
    asks the retrainer for a new one (in the background: the bundle in use serves until
    the new one is swapped in). Without a bundle yet, nobody is named until the first
    training ends. A bundle made from a folder (`kiosk train --people`) is used as it is.
    """

    def __init__(self, config: KioskConfig, retrainer: Retrainer | None) -> None:
        from enroll.store import open_store

        self.config = config
        self.path = bundle_path(config)
        self.retrainer = retrainer
        self.store = open_store(config.enroll)
        self.gallery = gallery_embedder(config) if config.recognizer.kind == "fusion" else None
        self._last: ClipRecognizer | None = None

    def signature(self) -> Hashable:
        return (self.store.state().digest, path_signature(self.path))

    def update(self) -> str:
        """What the retrainer is doing, for people to read ("" when idle)."""
        if self.retrainer is None:
            return ""
        status = self.retrainer.status()
        if status.state == "training":
            eta = f", about {status.eta_s:.0f} s left" if status.eta_s else ""
            return f"retraining: {status.message}{eta}"
        if status.state == "failed":
            return f"the last retrain failed: {status.message}"
        return ""

    def _retrain(self, people: int) -> None:
        if self.retrainer is not None and people >= 2:
            self.retrainer.request()

    def build(self) -> Recognizer:
        state = self.store.state()
        bundle = current_bundle(self.path)
        if bundle is None:
            self._retrain(len(state.people))
            return NobodyEnrolled()
        if bundle.source.get("kind") == "store":
            gone = set(bundle.person_ids) - set(state.names)
            if gone:
                forget_in_bundle(self.path, gone)
                bundle = bundle.without(gone)
            bundle = bundle.renamed(state.names)
            if bundle.source.get("digest") != state.digest:
                self._retrain(len(state.people))
        if not bundle.people:
            return NobodyEnrolled()
        clip = self._clip(bundle)
        if self.gallery is None:
            return clip
        from enroll.training import rebuild_gallery
        from models.fusion import FusionRecognizer

        threshold = self.config.recognizer.gallery_threshold
        return FusionRecognizer(
            clip, rebuild_gallery(self.store, self.gallery, threshold=threshold)
        )

    def _clip(self, bundle: RecognizerBundle) -> ClipRecognizer:
        """A recognizer over ``bundle``: the image tower in use is kept when it is the
        same one, so a retrained bundle swaps in without loading anything."""
        from models.clip.classifier import ClipRecognizer

        if self._last is None or self._last.bundle.identity != bundle.identity:
            clip = self.config.clip
            self._last = ClipRecognizer.load(
                self.path,
                model_dir(self.config),
                backend="onnx",
                threshold=clip.threshold,
                device=self.config.models.device,
                threads=self.config.models.threads,
                rejection=clip.rejection,
                precision=clip.precision,
                calibration=self._calibration_crops,
            )
        self._last = self._last.with_bundle(bundle)
        return self._last

    def _calibration_crops(self) -> list[NDArray[np.uint8]]:
        """Up to 64 of the enrolled people's aligned crops, for the int8 tower."""
        from models.clip.classifier import INT8_CALIBRATION

        crops: list[NDArray[np.uint8]] = []
        for person in self.store.people():
            for record in self.store.photos(person.name)[:8]:
                with contextlib.suppress(UserError):
                    crops.append(self.store.read_image(record))
            if len(crops) >= INT8_CALIBRATION:
                break
        return crops

    def close(self) -> None:
        if self.retrainer is not None:
            self.retrainer.stop()
        self.store.close()


def store_source(
    config: KioskConfig, retrainer: Retrainer | None = None
) -> StoreGallery | StoreClip:
    """The people store's recognizer source for the configured kind."""
    if config.recognizer.kind == "embedding_gallery":
        return StoreGallery(config)
    if retrainer is None and config.recognizer.retrain:
        retrainer = store_retrainer(config)
    return StoreClip(config, retrainer)


def store_retrainer(config: KioskConfig) -> Retrainer:
    """The background retrain of this configuration's bundle from its people store. The
    child reads the configuration from $KIOSK_CONFIG (kiosk.cli sets it from --config);
    the store and the bundle are passed explicitly."""
    from enroll.store import default_store_dir

    store = (config.enroll.store_dir or default_store_dir()).expanduser()
    return Retrainer.for_config(store=store, bundle=bundle_path(config))


def recognizer_holder(
    config: KioskConfig, retrainer: Retrainer | None = None, site: SiteSync | None = None
) -> RecognizerHolder:
    """The configured recognizer, watched for changes when ``[recognizer] reload``.

    On a site (``site``, from :func:`site_sync`) its names pass the replica's gate, and
    the CLIP bundle comes from the site (`kiosk site train` publishes it, the sync writes
    it here): a door does not retrain it itself."""
    reload = config.recognizer.reload
    poll_s = config.recognizer.reload_poll_s
    policy = site.gate if site is not None else None

    def close_site() -> None:
        if site is not None:
            site.close()
            site.store.close()

    try:
        if config.recognizer.kind == "embedding_gallery" and config.recognizer.folder is not None:
            folder = config.recognizer.folder.expanduser()
            holder = RecognizerHolder(
                recognizer_factory(config),
                folder if reload else None,
                poll_s,
                close=close_site,
                policy=policy,
            )
        elif config.recognizer.kind != "embedding_gallery" and not _trained_from_store(config):
            holder = RecognizerHolder(
                recognizer_factory(config),
                bundle_path(config) if reload or site else None,
                poll_s,
                close=close_site,
                policy=policy,
            )
        else:
            holder = _store_holder(
                config, retrainer if site is None else None, site, policy, close_site
            )
    except BaseException:
        close_site()
        raise
    if site is not None:
        site.on_change = holder.check_now  # a pulled change is rebuilt now, not at the poll
    return holder


def _store_holder(
    config: KioskConfig,
    retrainer: Retrainer | None,
    site: SiteSync | None,
    policy: NamingPolicy | None,
    close_site: Callable[[], None],
) -> RecognizerHolder:
    if site is not None:
        config = config.model_copy(
            update={"recognizer": config.recognizer.model_copy(update={"retrain": False})}
        )
    source = store_source(config, retrainer)
    guard = source.store.watcher()

    def close() -> None:
        source.close()
        guard.close()
        close_site()

    try:
        holder = RecognizerHolder(
            source.build,
            source.store.root if config.recognizer.reload or site else None,
            config.recognizer.reload_poll_s,
            signature=source.signature,
            close=close,
            people=guard,
            update=getattr(source, "update", None),
            policy=policy,
        )
        holder.retrainer = getattr(source, "retrainer", None)
        return holder
    except BaseException:
        source.close()
        guard.close()
        raise


def _trained_from_store(config: KioskConfig) -> bool:
    """Whether the CLIP bundle follows the people store (the default) or was trained from a
    folder (`kiosk train --people`, used as it is)."""
    bundle = current_bundle(bundle_path(config)) if config.recognizer.bundle else None
    return bundle is None or bundle.source.get("kind") != "folder"


def clip_recognizer(config: KioskConfig, bundle: Path) -> Recognizer:
    """The finetuned CLIP recognizer from a bundle file, with the ONNX image tower cached
    beside it; the reject threshold is the config's ``[clip] threshold``."""
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
        rejection=config.clip.rejection,
        precision=config.clip.precision,
    )


def recognizer_factory(config: KioskConfig) -> RecognizerFactory:
    """A function that builds the configured recognizer from a folder (a folder gallery,
    or a bundle trained from a folder) afresh; called again on reload.

    A folder gallery's detector and embedder are loaded on the first build and kept:
    a reload re-reads the photos, not the models."""
    if config.recognizer.kind != "embedding_gallery" or config.recognizer.folder is None:
        path = bundle_path(config)
        return lambda: clip_recognizer(config, path)
    folder = config.recognizer.folder.expanduser()

    @functools.cache
    def models() -> tuple[FaceDetector, FaceEmbedder]:
        return detector(config, input_size=config.kiosk.detector_input_size), gallery_embedder(
            config
        )

    def build() -> Recognizer:
        return folder_gallery(folder, *models(), config.recognizer.gallery_threshold)

    return build


def events_dir(config: KioskConfig) -> Path:
    """``[events] dir``, else ``<data dir>/events``."""
    return (config.events.dir or user_data_dir() / "events").expanduser()


def event_log(config: KioskConfig) -> EventLog:
    """The door's event log: ``[events] retention_days``, thumbnails sealed with each
    person's data key when the people store is encrypted."""
    from enroll.keys import operator_key
    from enroll.store import default_store_dir, person_sealer

    store = (config.enroll.store_dir or default_store_dir()).expanduser()
    sealer = person_sealer(store, operator_key(), config.enroll.encrypt)
    return EventLog(events_dir(config), retention_days=config.events.retention_days, sealer=sealer)


def live_pipeline(
    config: KioskConfig,
    *,
    source: str | FrameSource | None = None,
    factory: RecognizerFactory | None = None,
    veto: TrackVeto | None = None,
    on_erased: Callable[[], None] | None = None,
) -> LivePipeline:
    """The pipeline the config describes; ``source`` overrides ``[kiosk] source``. On a
    site, ``on_erased`` finishes the erasures its sync applies while it runs (the door
    passes :meth:`kiosk.erasure.ErasureFinisher.request`)."""
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
    site = site_sync(config, on_erased) if factory is None else None
    holder = (
        RecognizerHolder(factory) if factory is not None else recognizer_holder(config, site=site)
    )
    tracker = Tracker(
        TrackerSettings(
            live.min_frames,
            live.window,
            live.iou_threshold,
            live.max_missed,
            live.reclassify_every,
            live.pending_every,
            live.max_classify,
        ),
        veto=veto,
    )
    events = hooks = None
    if config.events.enabled:
        events = event_log(config)
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
