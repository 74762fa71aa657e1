"""Door events: an append-only log of recognitions, plus optional hooks to a door controller.

The log is ``events.jsonl`` (one JSON object a line, each appended with a single
``O_APPEND`` write and fsync) beside a ``thumbnails/`` folder whose files are written
atomically (:func:`models.io.write_bytes_atomic`), so a crash never leaves half an event;
opening the log removes the temporary file a killed run left. The folder, the log and
the thumbnails are the owner's alone (0700 and 0600).

Hooks (a command, an HTTP POST of the event's JSON) run on their own worker thread
with a per-person cooldown. A failing or slow hook is logged and counted; it never
blocks recognition, and when hooks fall far behind, new ones are dropped (and logged)
rather than queued without bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.errors import UserError
from models.io import (
    PRIVATE_FILE,
    make_private,
    private_dir,
    remove_stale_temps,
    write_bytes_atomic,
)

log = logging.getLogger(__name__)

EVENT_LOG = "events.jsonl"
THUMBNAILS = "thumbnails"


@dataclass(frozen=True)
class DoorEvent:
    name: str
    confidence: float
    time: str  # ISO 8601, UTC
    track_id: int
    thumbnail: str  # path relative to the event directory


class EventLog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / EVENT_LOG
        try:
            # Faces and names: the owner's alone (0700; thumbnails and the log are 0600).
            private_dir(directory)
            private_dir(directory / THUMBNAILS)
            if self.path.exists():
                make_private(self.path, PRIVATE_FILE)
        except OSError as error:
            raise UserError(
                f"cannot create the event log folder {directory}: {error}; "
                "set [events] dir to a writable folder"
            ) from error
        remove_stale_temps(directory / THUMBNAILS)  # a thumbnail a killed run was writing

    def append(
        self, name: str, confidence: float, track_id: int, thumbnail: NDArray[np.uint8]
    ) -> DoorEvent:
        import cv2

        now = datetime.now(UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        relative = f"{THUMBNAILS}/{stamp}_{uuid.uuid4().hex[:8]}.jpg"
        ok, encoded = cv2.imencode(".jpg", thumbnail, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("cannot encode the face thumbnail")
        write_bytes_atomic(self.directory / relative, encoded.tobytes())
        event = DoorEvent(name, round(float(confidence), 4), now.isoformat(), track_id, relative)
        line = (json.dumps(asdict(event), ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return event

    def read(self) -> list[DoorEvent]:
        """Every complete event; a torn last line (power cut mid-write) is skipped."""
        if not self.path.exists():
            return []
        events = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(DoorEvent(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                log.warning("skipping a damaged line in %s", self.path)
        return events


@dataclass(frozen=True)
class HookSettings:
    command: tuple[str, ...] = ()  # run with the event's JSON on stdin and KIOSK_EVENT_* env
    url: str | None = None  # receives the event's JSON by POST
    cooldown_s: float = 10.0  # per person
    timeout_s: float = 5.0

    @property
    def enabled(self) -> bool:
        return bool(self.command) or self.url is not None


class DoorHooks:
    """Runs the configured hooks for events on a worker thread, with a per-person cooldown."""

    def __init__(self, settings: HookSettings, max_pending: int = 16) -> None:
        self.settings = settings
        self.failures = 0
        self.completed = 0
        self.last_error = ""
        self._last_fired: dict[str, float] = {}
        self._queue: queue.Queue[DoorEvent | None] = queue.Queue(maxsize=max_pending)
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        if self.settings.enabled and self._worker is None:
            self._worker = threading.Thread(target=self._run, name="door-hooks", daemon=True)
            self._worker.start()

    def submit(self, event: DoorEvent) -> bool:
        """Queue the hooks for ``event`` unless the person is cooling down; never blocks."""
        if not self.settings.enabled:
            return False
        now = time.monotonic()
        last = self._last_fired.get(event.name)
        if last is not None and now - last < self.settings.cooldown_s:
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._fail(f"hooks are behind; dropped the hook for {event.name}")
            return False
        self._last_fired[event.name] = now
        return True

    def stop(self, discard_pending: bool = False) -> None:
        """End the worker after the hook it is running (each bounded by its timeout).

        Queued hooks run first, unless ``discard_pending``: then they are dropped and
        logged, so shutting the kiosk down never waits on a backlog of slow hooks.
        """
        if self._worker is None:
            return
        if discard_pending:
            dropped = 0
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
                    dropped += 1
            if dropped:
                log.warning("stopping: dropped %d pending door hooks", dropped)
        self._queue.put(None)
        self._worker.join()
        self._worker = None

    def _fail(self, message: str) -> None:
        self.failures += 1
        self.last_error = message
        log.warning(message)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            payload = json.dumps(asdict(event), ensure_ascii=False).encode("utf-8")
            if self.settings.command:
                self._run_command(self.settings.command, event, payload)
            if self.settings.url is not None:
                self._post(self.settings.url, payload)
            self.completed += 1

    def _run_command(self, command: Sequence[str], event: DoorEvent, payload: bytes) -> None:
        env = {
            **os.environ,
            "KIOSK_EVENT_NAME": event.name,
            "KIOSK_EVENT_CONFIDENCE": f"{event.confidence:.4f}",
            "KIOSK_EVENT_TIME": event.time,
        }
        try:
            done = subprocess.run(
                list(command),
                input=payload,
                env=env,
                capture_output=True,
                timeout=self.settings.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._fail(f"hook command {command[0]} timed out after {self.settings.timeout_s} s")
        except OSError as error:
            self._fail(f"hook command {command[0]} could not run: {error}")
        else:
            if done.returncode != 0:
                stderr = done.stderr.decode("utf-8", "replace").strip()[-200:]
                self._fail(f"hook command {command[0]} exited {done.returncode}: {stderr}")

    def _post(self, url: str, payload: bytes) -> None:
        request = urllib.request.Request(
            url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                response.read()
        except Exception as error:  # URLError, HTTPError, timeouts, resets: all only logged
            self._fail(f"hook POST to {url} failed: {error}")
