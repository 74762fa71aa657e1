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
bundle through :func:`clip_recognizer`.

:class:`RecognizerHolder` keeps the recognizer in use. A watcher thread polls the
source path; when it changes, a new recognizer is built on that thread (never the
inference thread) and swapped in with one reference assignment, so frames keep
flowing while it builds and each frame sees one whole recognizer.

A :class:`NamingPolicy` (a site kiosk's replica, kiosk/site/replica.py) may veto names:
:meth:`RecognizerHolder.current` then answers through a :class:`GatedRecognizer`, which
turns a refused name into an unknown face, and the policy's refusal becomes the
holder's ``last_error``, the notice the window shows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from models.detector import Face
from models.recognition import Prediction, Recognizer

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

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


class NamingPolicy(Protocol):
    """Who may be named now, asked on every prediction (so it must be cheap)."""

    def refusal(self) -> str:
        """Why nobody may be named now (e.g. a stale replica), or "" when names may be."""
        ...

    def may_name(self, name: str) -> bool:
        """Whether this name may be given (e.g. not erased from the site)."""
        ...


class GatedRecognizer:
    """A recognizer whose names pass a :class:`NamingPolicy`: a refused name is unknown,
    and not even offered as the best candidate."""

    def __init__(self, inner: Recognizer, policy: NamingPolicy) -> None:
        self.inner = inner
        self.policy = policy

    @property
    def people(self) -> Sequence[str]:
        return self.inner.people

    @property
    def threshold(self) -> float:
        return self.inner.threshold

    @property
    def providers(self) -> tuple[str, ...]:
        return providers_of(self.inner)

    def align(self, image: NDArray[np.uint8], face: Face) -> NDArray[np.uint8]:
        return self.inner.align(image, face)

    def predict(self, crops: Sequence[NDArray[np.uint8]]) -> list[Prediction]:
        predictions = self.inner.predict(crops)
        everyone_refused = bool(self.policy.refusal())
        gated = []
        for prediction in predictions:
            if everyone_refused or (prediction.best and not self.policy.may_name(prediction.best)):
                prediction = Prediction(name=None, best="", confidence=prediction.confidence)
            gated.append(prediction)
        return gated


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
        policy: NamingPolicy | None = None,
    ) -> None:
        self.factory = factory
        self.policy = policy
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
        self._last_error = ""
        self._stop = threading.Event()
        self._wake = threading.Event()  # check now, not at the next poll
        self._thread: threading.Thread | None = None

    def current(self) -> Recognizer:
        if self.policy is not None:
            return GatedRecognizer(self._recognizer, self.policy)
        return self._recognizer

    @property
    def last_error(self) -> str:
        """The reload's trouble, else the naming policy's refusal, else ""."""
        if self._last_error or self.policy is None:
            return self._last_error
        return self.policy.refusal()

    @last_error.setter
    def last_error(self, message: str) -> None:
        self._last_error = message

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
