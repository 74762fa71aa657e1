"""The headless live pipeline: capture -> detect -> align -> classify -> track and vote.

What a window needs, and all it needs::

    pipeline = kiosk.build.live_pipeline(config)   # or source=..., veto=...
    pipeline.on_result = callback   # optional: called on the inference thread with each
                                    # result (emit a queued Qt signal); must not block
    pipeline.start()                # capture + inference (+ reload, hook) threads
    pipeline.latest()               # the newest FrameResult or None; never blocks
    pipeline.status()               # "no camera at index 0, retrying in 2 s", or ""
    pipeline.pause() / resume()     # release the camera (the enrollment wizard wants it)
    pipeline.check_recognizer()     # someone was just enrolled: reload now, not at the poll
    pipeline.stop()                 # joins every thread it started; stays stopped

Headless, without threads (tests, replays, benchmarks)::

    for result in pipeline.run():                     # to the end of a file or folder
        ...

Threads: the capture thread reads frames into a newest-frame slot (a frame nobody took
is replaced and counted as dropped), the inference thread takes the newest frame and
publishes one immutable :class:`FrameResult` into a newest-result slot. Nothing queues,
so latency cannot build up; the GUI thread only reads ``latest()``.

Liveness (``[liveness] enabled``, the default): every tracked face is scored by a
:class:`LivenessMonitor` on every frame. Only a ``live`` track may be named and open the
door: a ``not_live`` track is shown as not live and never announced; an ``uncertain``
one is shown as pending, with the monitor's prompt ("Please turn your head slightly").
The votes cast meanwhile still count, so a track that turns live is named at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from kiosk.live.events import DoorHooks, EventLog
from kiosk.live.holder import RecognizerHolder, providers_of
from kiosk.live.liveness import LivenessMonitor, LivenessVerdict
from kiosk.live.results import FrameResult
from kiosk.live.retrain import Retrainer
from kiosk.live.slot import NewestSlot
from kiosk.live.sources import Frame, FrameSource, LiveCaptureSource
from kiosk.live.tracking import UNKNOWN_LABEL, Tracker, TrackUpdate, TrackVeto
from models.detector import Face, FaceDetector
from models.errors import UserError
from models.recognition import Prediction, Recognizer

log = logging.getLogger(__name__)

_FPS_WINDOW = 30  # results the FPS figure averages over
_IDLE_WAIT_S = 0.02  # how often a thread with nothing to do checks for stop
PAUSED_NOTICE = "Enrollment in progress: recognition resumes when it is done"
ENDED_HINT = "set loop = true under [kiosk] in the config to play it in a loop"


def face_thumbnail(image: NDArray[np.uint8], face: Face, size: int = 160) -> NDArray[np.uint8]:
    """The face box with a 25% margin, clipped to the image, scaled to at most ``size``."""
    import cv2

    x1, y1, x2, y2 = face.box
    pad = 0.25 * max(x2 - x1, y2 - y1)
    height, width = image.shape[:2]
    left, top = max(0, int(x1 - pad)), max(0, int(y1 - pad))
    right, bottom = min(width, int(x2 + pad)), min(height, int(y2 + pad))
    crop = image[top:bottom, left:right]
    if crop.size == 0:
        crop = image
    scale = size / max(crop.shape[:2])
    if scale < 1.0:
        small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(small, dtype=np.uint8)
    return np.ascontiguousarray(crop, dtype=np.uint8)


class LivenessVeto:
    """The tracker's veto: a track is not named unless live (nor while ``outer`` vetoes it).

    Keeps this frame's verdicts for the pipeline to show, and what the checks cost.
    """

    def __init__(self, monitor: LivenessMonitor, outer: TrackVeto | None = None) -> None:
        self.monitor = monitor
        self.outer = outer
        self.verdicts: dict[int, LivenessVerdict] = {}  # this frame's, by track id
        self.vetoed: set[int] = set()  # tracks the outer veto held this frame
        self.elapsed_ms = 0.0

    def new_frame(self) -> None:
        self.verdicts.clear()
        self.vetoed.clear()
        self.elapsed_ms = 0.0

    def __call__(self, track_id: int, frame: NDArray[np.uint8], face: Face) -> bool:
        started = time.perf_counter()
        verdict = self.monitor.update(track_id, frame, face)
        self.elapsed_ms += (time.perf_counter() - started) * 1000.0
        self.verdicts[track_id] = verdict
        if self.outer is not None and self.outer(track_id, frame, face):
            self.vetoed.add(track_id)
            return True
        return not verdict.is_live


def _only_names(update: TrackUpdate, allowed: set[str]) -> TrackUpdate:
    """``update`` showing no name outside ``allowed``: such a track is pending again."""
    view = update.view
    named = view.state == "recognized" and view.label not in allowed
    raw_gone = view.raw_best is not None and view.raw_best not in allowed
    if not (named or raw_gone):
        return update
    if raw_gone:
        view = replace(view, raw_best=None, raw_confidence=None)
    if named:
        view = replace(view, label=UNKNOWN_LABEL, state="pending")
    return replace(update, view=view, announce=update.announce and not named)


class LivePipeline:
    def __init__(
        self,
        source: FrameSource,
        detector: FaceDetector,
        recognizers: RecognizerHolder,
        tracker: Tracker,
        *,
        max_faces: int = 5,
        events: EventLog | None = None,
        hooks: DoorHooks | None = None,
        liveness: LivenessMonitor | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.recognizers = recognizers
        self.tracker = tracker
        self.max_faces = max_faces
        self.events = events
        self.hooks = hooks
        self.on_result: Callable[[FrameResult], None] | None = None
        self._frames: NewestSlot[Frame] = NewestSlot()
        self._results: NewestSlot[FrameResult] = NewestSlot()
        self._published: deque[float] = deque(maxlen=_FPS_WINDOW)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._notice = ""
        self._door_event_at = 0.0  # the newest door event, for the door screen
        self._last_recognizer: Recognizer | None = None
        self.finished = threading.Event()  # set when a file or folder source has run out
        self._paused = threading.Event()
        self._released = threading.Event()  # the capture thread holds no camera while paused
        self.liveness = liveness
        self._last_seen: dict[int, int] = {}  # track id -> frame count it was last seen
        self._frames_done = 0
        self._veto: LivenessVeto | None = None
        if liveness is not None:
            self._veto = tracker.veto = LivenessVeto(liveness, tracker.veto)

    # -- liveness --------------------------------------------------------------------

    def _apply_liveness(self, updates: list[TrackUpdate]) -> list[TrackUpdate]:
        """Show an uncertain track as pending (not as not live), with its prompt."""
        assert self.liveness is not None and self._veto is not None
        self._frames_done += 1
        applied = []
        for update in updates:
            track_id = update.view.track_id
            self._last_seen[track_id] = self._frames_done
            verdict = self._veto.verdicts.get(track_id)
            view = update.view
            if verdict is not None:
                if verdict.state == "uncertain" and track_id not in self._veto.vetoed:
                    view = replace(view, state="pending")
                view = replace(view, prompt=verdict.prompt or "")
            applied.append(replace(update, view=view))
        # A track unseen for a few frames still lives in the tracker: keep its evidence.
        horizon = self._frames_done - self.tracker.settings.max_missed
        self._last_seen = {t: seen for t, seen in self._last_seen.items() if seen >= horizon}
        self.liveness.retain(self._last_seen)
        return applied

    # -- one frame -------------------------------------------------------------------

    def process(self, frame: Frame) -> FrameResult:
        """Detect, align, classify, track and vote on one frame; record door events."""
        stages = {"decode": frame.decode_ms}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stages[stage] = (now - clock) * 1000.0
            clock = now

        faces = self.detector.detect(frame.image)[: self.max_faces]
        lap("detect")
        recognizer = self.recognizers.current()  # one recognizer for the whole frame
        if recognizer is not self._last_recognizer:
            # Someone erased or renamed: no track keeps a name the recognizer no longer has.
            self.tracker.retain_names(set(recognizer.people))
            self._last_recognizer = recognizer

        def classify(indices: Sequence[int]) -> list[Prediction]:
            started = time.perf_counter()
            crops = [recognizer.align(frame.image, faces[i]) for i in indices]
            aligned = time.perf_counter()
            predictions = recognizer.predict(crops)
            stages["align"] = (aligned - started) * 1000.0
            stages["classify"] = (time.perf_counter() - aligned) * 1000.0
            return predictions

        stages["align"] = stages["classify"] = 0.0
        if self._veto is not None:
            self._veto.new_frame()
        updates = self.tracker.update(frame.image, faces, classify)
        if self._veto is not None:
            updates = self._apply_liveness(updates)
            stages["liveness"] = self._veto.elapsed_ms
        lap("track")
        stages["track"] -= stages["align"] + stages["classify"] + stages.get("liveness", 0.0)
        latest = self.recognizers.current()
        if latest is not recognizer:
            # Someone was erased while this frame was classified: it shows nobody the
            # store no longer holds, and opens no door for them.
            allowed = set(latest.people)
            self.tracker.retain_names(allowed)
            self._last_recognizer = latest
            updates = [_only_names(update, allowed) for update in updates]
        for update in updates:
            if update.announce:
                self._record(update, frame.image, recognizer)
        lap("events")
        stages["total"] = sum(v for k, v in stages.items() if k != "decode")
        published_at = time.monotonic()
        self._published.append(published_at)
        notice = self.recognizers.last_error or self._notice
        if not recognizer.people:
            notice = notice or "nobody is enrolled: every face is shown as unknown"
        return FrameResult(
            frame_index=frame.index,
            frame=frame.image,
            captured_at=frame.captured_at,
            tracks=tuple(update.view for update in updates),
            stage_ms=stages,
            fps=self.fps(),
            dropped_frames=self._frames.dropped,
            providers=tuple(dict.fromkeys([*self.detector.providers, *providers_of(recognizer)])),
            source_status=self.source.status,
            published_at=published_at,
            recognizer=self.recognizers.info(),
            notice=notice,
            door_event_at=self._door_event_at,
        )

    def _record(
        self, update: TrackUpdate, image: NDArray[np.uint8], recognizer: Recognizer
    ) -> None:
        """Log a door event (fast, local) here, by the person's opaque id; hooks go to
        their own worker."""
        if self.events is None:
            return
        view = update.view
        inner = getattr(recognizer, "inner", recognizer)  # a naming policy's gate
        ids = getattr(inner, "person_ids", None) or recognizer.people
        person = dict(zip(recognizer.people, ids, strict=False)).get(view.label, view.label)
        try:
            event = self.events.append(
                person,
                view.label,
                view.confidence,
                view.track_id,
                face_thumbnail(image, update.face),
            )
        except (OSError, UserError) as error:
            self._notice = f"cannot write the event log {self.events.path}: {error}"
            log.error(self._notice)
            return
        if event is None:  # the person was erased meanwhile: nothing is kept
            return
        self._door_event_at = time.monotonic()
        if self.hooks is not None:
            self.hooks.submit(event)

    def fps(self) -> float:
        if len(self._published) < 2:
            return 0.0
        span = self._published[-1] - self._published[0]
        return (len(self._published) - 1) / span if span > 0 else 0.0

    # -- synchronous -----------------------------------------------------------------

    def run(self, max_frames: int | None = None) -> Iterator[FrameResult]:
        """Process every frame in this thread until the source ends (or ``max_frames``)."""
        if self.hooks is not None:
            self.hooks.start()
        done = 0
        try:
            while max_frames is None or done < max_frames:
                frame = self.source.read()
                if frame is None:
                    if self.source.finished:
                        break
                    time.sleep(_IDLE_WAIT_S)
                    continue
                yield self.process(frame)
                done += 1
        finally:
            if self.hooks is not None:
                self.hooks.stop()

    # -- threaded --------------------------------------------------------------------

    def start(self) -> None:
        if self._threads or self._stop.is_set():
            raise RuntimeError("a pipeline starts once; build a new one to start again")
        if self.hooks is not None:
            self.hooks.start()
        self.recognizers.start()
        self._threads = [
            threading.Thread(target=self._capture_loop, name="capture", daemon=True),
            threading.Thread(target=self._inference_loop, name="inference", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def check_recognizer(self) -> None:
        """Look for a changed recognizer source now (the wizard just saved someone)."""
        self.recognizers.check_now()

    @property
    def retrainer(self) -> Retrainer | None:
        """The CLIP bundle's background retrain, which the wizard follows after a save."""
        return self.recognizers.retrainer

    def pause(self, timeout: float = 2.0) -> bool:
        """Stop reading and release the source (a camera), e.g. while the enrollment wizard
        uses it; the window keeps the last result. ``resume()`` opens it again.

        Returns once the camera is released (True), or after ``timeout`` (False).
        """
        self._paused.set()
        capturing = any(t.name == "capture" and t.is_alive() for t in self._threads)
        return self._released.wait(timeout) if capturing else True

    def resume(self) -> None:
        self._released.clear()
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def latest(self) -> FrameResult | None:
        """The newest published result (the same one until a newer comes); never blocks."""
        return self._results.peek()

    def status(self) -> str:
        """One line for the window: the source's trouble, else the recognizer's, else ""."""
        if self._paused.is_set():
            return PAUSED_NOTICE
        if self.source.finished:  # a file or folder, not "camera lost"
            return f"{self.source.status}: {ENDED_HINT}"
        return self.source.status or self.recognizers.last_error or self._notice

    def stop(self) -> None:
        """Stop and join the capture, inference, reload and hook threads; release the source."""
        self._stop.set()
        self._frames.close()
        for thread in self._threads:
            thread.join()
        self._threads = []
        self.recognizers.stop()
        if self.hooks is not None:
            self.hooks.stop(discard_pending=True)
        self.source.close()

    def _capture_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self._paused.is_set():
                    if isinstance(self.source, LiveCaptureSource):
                        self.source.close()  # free the camera; it reopens on the next read
                    self._released.set()
                    while self._paused.is_set() and not self._stop.wait(_IDLE_WAIT_S):
                        pass
                    continue
                try:
                    frame = self.source.read()
                except Exception as error:  # a source bug must not end capture silently
                    log.exception("reading %s failed", self.source.description)
                    self.source.status = f"{self.source.description}: {error}"
                    frame = None
                if frame is not None:
                    self._frames.put(frame)
                elif self.source.finished:
                    return
                else:
                    self._stop.wait(_IDLE_WAIT_S)
        finally:
            self._frames.close()

    def _inference_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._frames.take(timeout=0.5)
            if frame is None:
                if self.source.finished:
                    self.finished.set()
                    return
                continue
            try:
                result = self.process(frame)
            except Exception as error:  # keep the video going; the window shows the notice
                log.exception("processing frame %d failed", frame.index)
                self._notice = f"processing failed: {error}"
                continue
            self._results.put(result)
            if self.on_result is not None:
                self.on_result(result)
