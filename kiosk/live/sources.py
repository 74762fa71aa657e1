"""Frame sources behind one interface: webcam index, video file, stream URL, image folder.

``open_source(spec)`` picks one from a ``--source`` string. ``read()`` never raises
into the pipeline: it returns a :class:`Frame`, or None when no frame is ready (then
``status`` says why, e.g. "no camera at index 0, retrying in 2 s"), and ``finished``
turns True only when a non-looping file or folder has run out. Cameras and streams
reconnect with exponential backoff for as long as the app runs.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from models.errors import UserError
from models.io import IMAGE_SUFFIXES, ImageRefused, read_image

if TYPE_CHECKING:
    import cv2

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


class SourceEnded(Exception):
    """A file or folder (not looping) has no more frames: raised by readers that must tell
    "ended" from "no frame right now" (the enrollment wizard's); the message says which."""


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source (restarts are not reset)
    image: NDArray[np.uint8]  # BGR
    captured_at: float  # time.monotonic() when the frame was read
    decode_ms: float  # time spent reading and decoding it


class FrameSource(ABC):
    """A producer of BGR frames. ``read`` may sleep to pace a file at camera speed."""

    description: str

    def __init__(self) -> None:
        self.status = ""
        self.finished = False
        self._index = 0

    @abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:  # noqa: B027 - most sources hold nothing
        """Release the device or file."""

    def _frame(self, image: NDArray[np.uint8], started: float) -> Frame:
        now = time.monotonic()
        frame = Frame(self._index, image, now, (now - started) * 1000.0)
        self._index += 1
        return frame


class Backoff:
    """Exponential retry delays: initial, 2x, 4x, ... capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = initial

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2.0, self.maximum)
        return delay

    def reset(self) -> None:
        self.delay = self.initial


def _format_delay(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


class LiveCaptureSource(FrameSource):
    """A webcam index or a stream URL through OpenCV; reconnects with backoff, forever."""

    def __init__(
        self, target: int | str, *, retry_initial_s: float = 1.0, retry_max_s: float = 30.0
    ) -> None:
        super().__init__()
        self.target = target
        self.description = f"camera {target}" if isinstance(target, int) else f"stream {target}"
        self.attempts = 0
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._capture: cv2.VideoCapture | None = None
        self._retry_at = 0.0

    def _open(self) -> None:
        import cv2

        self.attempts += 1
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target)
        else:  # bounded waits, so a dead stream cannot hang the capture thread for long
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            capture = cv2.VideoCapture(self.target, cv2.CAP_ANY, timeouts)
        if capture.isOpened():
            self._capture = capture
            self._backoff.reset()
            self.status = ""
            return
        capture.release()
        delay = self._backoff.next()
        self._retry_at = time.monotonic() + delay
        what = (
            f"no camera at index {self.target}"
            if isinstance(self.target, int)
            else f"cannot open stream {self.target}"
        )
        self.status = f"{what}, retrying in {_format_delay(delay)}"
        if self.attempts == 1:  # once: OpenCV's own logging is silenced (models/__init__.py)
            log.warning("%s (no more is logged while it retries)", what)

    def read(self) -> Frame | None:
        if self._capture is None:
            if time.monotonic() < self._retry_at:
                return None
            try:
                self._open()
            except Exception as error:  # OpenCV backends raise odd things; never propagate
                log.warning("opening %s failed: %s", self.description, error)
                self.status = f"{self.description} failed to open: {error}"
                self._retry_at = time.monotonic() + self._backoff.next()
            if self._capture is None:
                return None
        started = time.monotonic()
        ok, image = self._capture.read()
        if ok and image is not None:
            return self._frame(np.asarray(image, dtype=np.uint8), started)
        self._capture.release()
        self._capture = None
        delay = self._backoff.next()
        self._retry_at = time.monotonic() + delay
        self.status = f"{self.description} lost, reconnecting in {_format_delay(delay)}"
        log.warning(self.status)
        return None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class _Pacer:
    """Sleeps so frames come out at ``fps`` (camera speed); never catches up by bursting."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self._due = 0.0

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if self._due > now:
            time.sleep(self._due - now)
            now = self._due
        self._due = now + self.period


class VideoFileSource(FrameSource):
    """A video file, read as fast as possible or paced at its own fps; optionally looping."""

    def __init__(self, path: Path, *, loop: bool = False, realtime: bool = False) -> None:
        import cv2

        super().__init__()
        if not path.is_file():
            raise UserError(f"video file {path} does not exist")
        self.path = path
        self.description = f"video {path.name}"
        self.loop = loop
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise UserError(f"cannot open video {path}: not a video OpenCV can decode")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._pacer = _Pacer(self.fps if realtime else None)

    def read(self) -> Frame | None:
        import cv2

        if self.finished:
            return None
        self._pacer.wait()
        started = time.monotonic()
        ok, image = self._capture.read()
        if not ok and self.loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok or image is None:
            self.finished = True
            self.status = f"{self.description} has ended"
            return None
        return self._frame(np.asarray(image, dtype=np.uint8), started)

    def close(self) -> None:
        self._capture.release()


class ImageFolderSource(FrameSource):
    """The images of a folder in name order, paced at ``fps`` or as fast as possible.

    Each is read by :func:`models.io.read_image`: one it refuses is skipped, with a status."""

    def __init__(
        self, folder: Path, *, loop: bool = False, realtime: bool = False, fps: float = 5.0
    ) -> None:
        super().__init__()
        self.folder = folder
        self.description = f"folder {folder}"
        self.loop = loop
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise UserError(
                f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.fps = fps
        self._pacer = _Pacer(fps if realtime else None)
        self._position = 0

    def read(self) -> Frame | None:
        if self.finished:
            return None
        if self._position >= len(self.files):
            if not self.loop:
                self.finished = True
                self.status = f"{self.description} has ended"
                return None
            self._position = 0
        path = self.files[self._position]
        self._position += 1
        self._pacer.wait()
        started = time.monotonic()
        try:
            image = read_image(path, where=path.name)
        except ImageRefused as refused:  # unreadable, corrupt or over the size limits
            self.status = f"skipped: {refused}"
            log.warning("%s: %s", self.description, self.status)
            return None
        return self._frame(image, started)


def open_source(
    spec: str,
    *,
    loop: bool = False,
    realtime: bool = True,
    retry_initial_s: float = 1.0,
    retry_max_s: float = 30.0,
) -> FrameSource:
    """A source from a ``--source`` string: a camera index, a URL, a folder or a video file.

    ``realtime`` paces files and folders at camera speed; cameras and streams are always live.
    """
    spec = spec.strip()
    if not spec:
        raise UserError("the source is empty: give a camera index, a video, a folder or a URL")
    if spec.isdigit():
        return LiveCaptureSource(
            int(spec), retry_initial_s=retry_initial_s, retry_max_s=retry_max_s
        )
    if spec.lower().startswith(STREAM_SCHEMES):
        return LiveCaptureSource(spec, retry_initial_s=retry_initial_s, retry_max_s=retry_max_s)
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return ImageFolderSource(path, loop=loop, realtime=realtime)
    if path.is_file():
        return VideoFileSource(path, loop=loop, realtime=realtime)
    raise UserError(
        f"there is no file or folder {path}: give --source (or [kiosk] source) a camera index "
        "such as 0, an existing video file or image folder, or a stream URL (rtsp://...)"
    )
