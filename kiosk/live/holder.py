"""The recognizer the live pipeline uses, and its hot reload (built by kiosk/build.py).

:class:`RecognizerHolder` keeps the recognizer in use. A watcher thread polls a signature
of its source (the people store's state, a folder's or a bundle's files); when it
changes, a new recognizer is built on that thread (never the inference thread) and
swapped in with one reference assignment, so frames keep flowing while it builds and
each frame sees one whole recognizer. A failed build keeps the recognizer in use and is
tried again with a growing delay (``poll_s`` doubling to 60 s; a further change is tried
at once); the change counts as seen only once a build succeeded.

Erasure cannot wait for a rebuild or a retrain: with a ``people`` guard (the people
store's :class:`~enroll.store.StoreWatcher`), :meth:`RecognizerHolder.current` checks
before every frame whether the store changed and, if so, drops the people who are no
longer enrolled (and shows renamed people under their new names) from the recognizer
at once, and from every recognizer swapped in later until a rebuild has caught up. A
deleted person is therefore never named on a frame processed after the deletion
committed.

A :class:`NamingPolicy` (a site kiosk's replica, kiosk/site/replica.py) may veto names:
:meth:`RecognizerHolder.current` then answers through a :class:`GatedRecognizer`, which
turns a refused name into an unknown face, and the policy's refusal becomes the
holder's ``last_error``, the notice the window shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from kiosk.live.results import RecognizerInfo
from kiosk.live.retrain import Retrainer
from models.detector import Face
from models.recognition import PeopleRecognizer, Prediction, Recognizer

log = logging.getLogger(__name__)

RecognizerFactory = Callable[[], Recognizer]
Signature = Callable[[], Hashable]
MAX_RETRY_S = 60.0


class PeopleGuard(Protocol):
    """Who is enrolled now (uid -> name), and whether that may have changed."""

    def changed(self) -> bool: ...

    def people(self) -> dict[str, str]: ...


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


def recognizer_info(recognizer: Recognizer, version: int, update: str = "") -> RecognizerInfo:
    """What a recognizer is: its kind, and its own version (a CLIP bundle's, a fusion's
    CLIP part's) or else ``version`` (a gallery's rebuild count)."""
    bundle = getattr(recognizer, "bundle", None)
    clip = getattr(recognizer, "clip", None)  # a fusion's CLIP part
    bundle = bundle if bundle is not None else getattr(clip, "bundle", None)
    return RecognizerInfo(
        kind=str(getattr(recognizer, "kind", "")),
        version=int(getattr(recognizer, "version", version)),
        trained_at=str(getattr(bundle, "trained_at", "")),
        people=len(recognizer.people),
        update=update,
    )


class RecognizerHolder:
    """The recognizer in use; ``watch`` rebuilds it off the inference thread when it changes.

    Whether it changed is ``signature()`` (default: :func:`path_signature` of ``watch``);
    ``people`` keeps it true to the people store between rebuilds (module docstring);
    ``update`` says what is being done about the recognizer (a retrain's progress) for
    :meth:`info`; ``close`` runs at ``stop()``.
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
        people: PeopleGuard | None = None,
        update: Callable[[], str] | None = None,
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
        self._guard = people
        self._update = update
        self.retrainer: Retrainer | None = None  # the CLIP bundle's, when it has one
        self._lock = threading.Lock()  # the swap, and the guard's filtering
        self._enrolled: dict[str, str] | None = None  # the guard's last answer
        if people is not None:
            people.changed()  # the current state is the baseline
            self._enrolled = people.people()
        # Taken before the first build: a change during it triggers one more.
        self._signature = signature() if watch is not None and signature is not None else ()
        self._recognizer = self._true_to_store(initial if initial is not None else factory())
        self.version = 1
        self._last_error = ""
        self._retry_at = 0.0
        self._retry_s = poll_s
        self._failed: Hashable = None  # the signature whose build failed last
        self._gated: GatedRecognizer | None = None  # the policy's view of the one in use
        self._stop = threading.Event()
        self._wake = threading.Event()  # check now, not at the next poll
        self._thread: threading.Thread | None = None

    def current(self) -> Recognizer:
        """The recognizer for this frame: every frame asks, so an erasure is applied now."""
        guard = self._guard
        if guard is not None:
            try:
                changed = guard.changed()
            except Exception as error:  # the store's disk is gone: name nobody new
                self.last_error = f"cannot read the people store: {error}"
                return NobodyEnrolled()
            if changed:
                enrolled = guard.people()
                with self._lock:
                    self._enrolled = enrolled
                    self._recognizer = self._true_to_store(self._recognizer)
                self._wake.set()  # and rebuild (or retrain) soon
        recognizer = self._recognizer
        if self.policy is None:
            return recognizer
        if self._gated is None or self._gated.inner is not recognizer:
            self._gated = GatedRecognizer(recognizer, self.policy)
        return self._gated

    def _true_to_store(self, recognizer: Recognizer) -> Recognizer:
        """``recognizer`` without the people no longer enrolled, under today's names."""
        enrolled = self._enrolled
        if enrolled is None or not isinstance(recognizer, PeopleRecognizer):
            return recognizer
        gone = set(recognizer.person_ids) - set(enrolled)
        if gone:
            recognizer = recognizer.without(gone)
        shown = dict(zip(recognizer.person_ids, recognizer.people, strict=True))
        if any(enrolled.get(key, name) != name for key, name in shown.items()):
            recognizer = recognizer.renamed(enrolled)
        return recognizer if recognizer.people else NobodyEnrolled()

    def info(self) -> RecognizerInfo:
        """Which recognizer is in use, for the operator's view and the trials' records."""
        update = self._update() if self._update is not None else ""
        return recognizer_info(self._recognizer, self.version, update)

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
        """Rebuild and swap if the watched source changed; a failed build keeps the old
        recognizer, is retried with backoff, and leaves the change unseen until then."""
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
        if signature == self._failed and time.monotonic() < self._retry_at:
            return False  # the same state failed just now: wait before trying it again
        try:
            recognizer = self.factory()
        except Exception as error:  # a half-written bundle must not take the kiosk down
            self._failed = signature
            self._retry_at = time.monotonic() + self._retry_s
            self.last_error = (
                f"reload of {self.watch} failed, keeping the previous one (next try in "
                f"{self._retry_s:.0f} s): {error}"
            )
            self._retry_s = min(self._retry_s * 2, MAX_RETRY_S)
            log.warning(self.last_error)
            return False
        with self._lock:
            if self._guard is not None:  # who is enrolled now, not when the guard last looked
                self._enrolled = self._guard.people()
            self._recognizer = self._true_to_store(recognizer)  # atomic for readers
        self._signature = signature  # seen: only now that the build succeeded
        self._retry_s = self.poll_s
        self._failed = None
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
        self._retry_at = 0.0
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
                try:
                    self.reload_if_changed()
                except Exception:  # never let the watcher die silently
                    log.exception("the recognizer watcher failed; it keeps watching")


def providers_of(recognizer: Recognizer) -> tuple[str, ...]:
    """The execution providers a recognizer reports (none for one that runs no model)."""
    return tuple(getattr(recognizer, "providers", ()))
