"""The recognizer the live pipeline uses, built from the config, and its hot reload.

``[recognizer] kind = "store"`` (the default) builds an :class:`EmbeddingGallery` of
everyone in the people store (``[enroll] store_dir``) with
:func:`enroll.training.rebuild_gallery`: whoever the enrollment wizard saves reaches the
running kiosk within ``reload_poll_s``. The reload signal is the store's content, not
its files: ``(uid, name, photo count)`` of every person, read from the store's SQLite
database on each poll. File times would not do: SQLite in WAL mode writes to side files
and checkpoints at its own pace, and a rebuild itself writes (it caches embeddings).
``kind = "gallery"`` builds an :class:`EmbeddingGallery` from a folder
holding one folder of photos per person (the largest face of each photo). Both galleries
embed with ``[recognizer] embedder``: MobileFaceNet, or CLIP's frozen image tower
zero-shot (:func:`gallery_embedder`). ``kind = "clip"`` loads a trained recognizer
bundle through :func:`build_clip_recognizer`.

:class:`RecognizerHolder` keeps the recognizer in use. A watcher thread polls the
source path; when it changes, a new recognizer is built on that thread (never the
inference thread) and swapped in with one reference assignment, so frames keep
flowing while it builds and each frame sees one whole recognizer.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kiosk.config import KioskConfig
from models import registry
from models.detector import Face, FaceDetector
from models.errors import UserError
from models.io import IMAGE_SUFFIXES
from models.paths import user_cache_dir, user_data_dir
from models.recognition import Prediction, Recognizer

if TYPE_CHECKING:
    from enroll.store import PeopleStore
    from models.embedder import FaceEmbedder

log = logging.getLogger(__name__)

MOBILEFACENET = "mobilefacenet_128d"
RecognizerFactory = Callable[[], Recognizer]
Signature = Callable[[], Hashable]


class NobodyEnrolled:
    """The recognizer of an empty gallery: every face is a stranger."""

    people: Sequence[str] = ()
    threshold = 1.0

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return image[:0, :0]

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        return [Prediction(name=None, best="", confidence=0.0) for _ in crops]


def recognizer_path(config: KioskConfig) -> Path:
    """The configured gallery folder or bundle file, else its default in the data dir."""
    if config.recognizer.path is not None:
        return config.recognizer.path.expanduser()
    default = "gallery" if config.recognizer.kind == "gallery" else "recognizer.bundle"
    return user_data_dir() / default


def gallery_embedder(config: KioskConfig) -> FaceEmbedder:
    """The configured gallery embedder: MobileFaceNet, or CLIP's image tower as an ONNX
    file exported once into the user's cache dir (torch is needed only that once)."""
    model_dir = registry.resolve_model_dir(config.models.dir)
    if config.recognizer.embedder == "clip":
        from models.clip.embedder import ClipFaceEmbedder

        return ClipFaceEmbedder.load(
            config.clip.model,
            config.clip.pretrained,
            model_dir,
            user_cache_dir() / "clip",
            device=config.models.device,
            threads=config.models.threads,
        )
    from models.embedder import ArcFaceEmbedder

    return ArcFaceEmbedder(
        registry.model_path(MOBILEFACENET, model_dir),
        device=config.models.device,
        threads=config.models.threads,
    )


def build_gallery(
    folder: Path, detector: FaceDetector, embedder: FaceEmbedder, threshold: float
) -> Recognizer:
    """An embedding gallery over ``folder/<person>/<photo>``; photos without a face are skipped."""
    import cv2

    from models.gallery import EmbeddingGallery

    if not folder.exists():
        log.info("gallery folder %s does not exist yet: nobody is enrolled", folder)
        return NobodyEnrolled()
    if not folder.is_dir():
        raise UserError(f"gallery {folder} is not a folder (expected one folder per person)")
    crops: dict[str, Sequence[NDArray[np.uint8]]] = {}
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for photo in sorted(person.iterdir()):
            if photo.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            read = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if read is None:
                log.warning("gallery: skipped %s: not a readable image", photo)
                continue
            image = np.asarray(read, dtype=np.uint8)
            faces = detector.detect(image, mode="largest")
            if not faces:
                log.warning("gallery: skipped %s: no face found", photo)
                continue
            crops[person.name] = [*crops.get(person.name, []), embedder.align(image, faces[0])]
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
        from enroll.store import open_store

        self.embedder = gallery_embedder(config)
        self.store = open_store(config.enroll)
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


def recognizer_holder(config: KioskConfig) -> RecognizerHolder:
    """The configured recognizer, watched for changes when ``[recognizer] reload``."""
    reload = config.recognizer.reload
    poll_s = config.recognizer.reload_poll_s
    if config.recognizer.kind == "store":
        store = StoreRecognizers(config)
        try:
            return RecognizerHolder(
                store.build,
                store.store.root if reload else None,
                poll_s,
                signature=store.signature,
                close=store.close,
            )
        except BaseException:
            store.close()
            raise
    watch = recognizer_path(config) if reload else None
    return RecognizerHolder(recognizer_factory(config), watch, poll_s)


def build_clip_recognizer(config: KioskConfig, bundle: Path) -> Recognizer:
    """The finetuned CLIP recognizer from a bundle file (`kiosk train`), with the ONNX image
    tower cached beside it; the reject threshold is the config's ``[clip] threshold``."""
    from models.clip.classifier import ClipRecognizer

    if not bundle.exists():
        log.info("recognizer bundle %s does not exist yet: nobody is enrolled", bundle)
        return NobodyEnrolled()
    return ClipRecognizer.load(
        bundle,
        registry.resolve_model_dir(config.models.dir),
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
        return lambda: build_clip_recognizer(config, path)
    model_dir = registry.resolve_model_dir(config.models.dir)

    @functools.cache
    def models() -> tuple[FaceDetector, FaceEmbedder]:
        detector = FaceDetector.from_name(
            config.detector.name,
            model_dir,
            input_size=config.kiosk.detector_input_size,
            threshold=config.detector.threshold,
            device=config.models.device,
        )
        return detector, gallery_embedder(config)

    def build() -> Recognizer:
        return build_gallery(path, *models(), config.recognizer.gallery_threshold)

    return build


def path_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a file or any file under a folder is added, removed or rewritten."""
    if not path.exists():
        return ()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    signature = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:  # removed while we looked
            continue
        signature.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


class RecognizerHolder:
    """The recognizer in use; ``watch`` rebuilds it off the inference thread when it changes.

    Whether it changed is ``signature()`` (default: :func:`path_signature` of ``watch``);
    ``close`` runs at ``stop()``.
    """

    def __init__(
        self,
        factory: RecognizerFactory,
        watch: Path | None = None,
        poll_s: float = 2.0,
        initial: Recognizer | None = None,
        *,
        signature: Signature | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.factory = factory
        self.watch = watch
        self.poll_s = poll_s
        if signature is None and watch is not None:
            watched = watch

            def signature() -> Hashable:
                return path_signature(watched)

        self._signature_of = signature
        self._close = close
        # Taken before the first build: a change during it triggers one more.
        self._signature = signature() if watch is not None and signature is not None else ()
        self._recognizer = initial if initial is not None else factory()
        self.version = 1
        self.last_error = ""
        self._stop = threading.Event()
        self._wake = threading.Event()  # check now, not at the next poll
        self._thread: threading.Thread | None = None

    def current(self) -> Recognizer:
        return self._recognizer

    def reload_if_changed(self) -> bool:
        """Rebuild and swap if the watched path changed; a failed build keeps the old one."""
        if self.watch is None or self._signature_of is None:
            return False
        try:
            signature = self._signature_of()
        except Exception as error:  # e.g. the store's disk is gone: keep what we have
            self.last_error = f"cannot check {self.watch} for changes: {error}"
            log.warning(self.last_error)
            return False
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            recognizer = self.factory()
        except Exception as error:  # a half-written bundle must not take the kiosk down
            self.last_error = f"reload of {self.watch} failed, keeping the previous one: {error}"
            log.warning(self.last_error)
            return False
        self._recognizer = recognizer  # one reference assignment: atomic for readers
        self.version += 1
        self.last_error = ""
        log.info("recognizer reloaded from %s (version %d)", self.watch, self.version)
        return True

    def start(self) -> None:
        if self.watch is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="recognizer-reload", daemon=True)
        self._thread.start()

    def check_now(self) -> None:
        """Have the watcher look for a change at once (someone was just enrolled)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._close is not None:
            self._close()
            self._close = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.reload_if_changed()


def providers_of(recognizer: Recognizer) -> tuple[str, ...]:
    """The execution providers a recognizer reports (none for one that runs no model)."""
    return tuple(getattr(recognizer, "providers", ()))
