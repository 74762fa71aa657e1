"""Door events: an append-only log of recognitions, plus optional hooks to a door controller.

The log is ``events.jsonl`` (one JSON object a line, each appended with a single
``O_APPEND`` write and fsync) beside a ``thumbnails/`` folder whose files are written
atomically (:func:`models.io.write_bytes_atomic`), so a crash never leaves half an event;
opening the log removes the temporary file a killed run left, and a thumbnail no line
refers to (a kill between the thumbnail and its line) once it is
:data:`ORPHAN_AGE_S` old. The folder, the log and the thumbnails are the owner's alone
(0700 and 0600).

A line names the person by their opaque id (``person_uid``, the people store's), never
by name: the name is resolved when an event is shown (:meth:`EventLog.read` with the
store's names). A recognizer that knows people only by a folder's name logs a digest of
the name instead (:func:`logged_person`). With an encrypted store, each thumbnail is
sealed with the person's own data key (a :class:`Sealer`), so erasing the person shreds
every copy of it. Events are kept ``retention_days`` (purged when the log is opened, and
daily while the door runs), and :meth:`EventLog.forget` removes a person's events and
thumbnails at once (an erasure). Appends and rewrites hold the log's file lock, so a
rewrite by another process (``kiosk people delete``) never loses the door's new events.

Hooks (a command, an HTTP POST of the event's JSON) run on their own worker thread
with a per-person cooldown. A failing or slow hook is logged and counted; it never
blocks recognition, and when hooks fall far behind, new ones are dropped (and logged)
rather than queued without bound. A hook is the door controller's interface: its JSON
has the person's ``name`` as well as ``person_uid`` (the log file never has the name).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

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
from models.names import name_digest

log = logging.getLogger(__name__)

EVENT_LOG = "events.jsonl"
THUMBNAILS = "thumbnails"
SEALED = ".sealed"  # the suffix of a thumbnail sealed with its person's data key
PURGE_EVERY_S = 24 * 3600.0
_STORE_ID = re.compile(r"[0-9a-f]{32}")  # enroll.store's opaque person ids
_LOCK_TIMEOUT_S = 30.0
# A thumbnail no line refers to is an orphan once it is this old. An append writes the
# thumbnail and its line holding the log's lock, and the sweep holds it too, so under
# the lock an orphan can only be a killed append's; the age also spares a thumbnail of a
# writer that does not take the lock (a door of an earlier version still running during
# an upgrade, a network filesystem without locks), whose line comes a moment later.
ORPHAN_AGE_S = 60.0


def logged_person(person_id: str, name: str) -> str:
    """What an event logs for a person: the people store's opaque id; a recognizer that
    knows people only by name (a folder) gets ``name-`` and a digest of the name."""
    if _STORE_ID.fullmatch(person_id):
        return person_id
    return _by_digest(name_digest(name))


def _by_digest(digest: str) -> str:
    return "name-" + digest[:32]


def folder_names(names: Collection[str]) -> dict[str, str]:
    """What :meth:`EventLog.read` resolves a folder recognizer's events with."""
    return {logged_person(name, name): name for name in names}


class Sealer(Protocol):
    """Seals a person's thumbnail with their data key (enroll/store.py PersonSealer)."""

    def seal(self, uid: str, data: bytes) -> bytes | None:
        """None: the person has no key (erased meanwhile): nothing is to be kept."""
        ...

    def unseal(self, uid: str, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class DoorEvent:
    person_uid: str  # the people store's opaque id (see logged_person)
    confidence: float
    time: str  # ISO 8601, UTC
    track_id: int
    thumbnail: str  # path relative to the event directory
    name: str = ""  # resolved for display and the hooks; never written to the log

    def line(self) -> dict[str, Any]:
        """The event as the log file keeps it: without the name."""
        fields = asdict(self)
        del fields["name"]
        return fields


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return line if isinstance(line, dict) else None


def _who(line: Mapping[str, Any]) -> str:
    """The person of a line; a line written before ids were logged has only the name."""
    person = line.get("person_uid") or line.get("uid")
    if isinstance(person, str) and person:
        return person
    name = line.get("name")
    return logged_person("", name) if isinstance(name, str) else ""


class EventLog:
    def __init__(
        self, directory: Path, *, retention_days: int | None = None, sealer: Sealer | None = None
    ) -> None:
        self.directory = directory
        self.path = directory / EVENT_LOG
        self.retention_days = retention_days
        self.sealer = sealer
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
        self._purged_at = 0.0
        self.purge_expired()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        try:
            lock = FileLock(
                str(self.directory / f"{EVENT_LOG}.lock"), _LOCK_TIMEOUT_S, mode=PRIVATE_FILE
            )
            with lock:
                yield
        except Timeout:
            raise UserError(
                f"the event log {self.path} has been locked for {_LOCK_TIMEOUT_S:.0f} s; "
                "if no kiosk runs, remove the .lock file beside it"
            ) from None

    def append(
        self,
        person_uid: str,
        name: str,
        confidence: float,
        track_id: int,
        thumbnail: NDArray[np.uint8],
    ) -> DoorEvent | None:
        """Log that ``name`` (the person ``person_uid``) was recognized; None when the
        person was erased meanwhile (nothing of theirs is written)."""
        import cv2

        if self.retention_days is not None and time.time() - self._purged_at > PURGE_EVERY_S:
            self.purge_expired()
        person = logged_person(person_uid, name)
        now = datetime.now(UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        relative = f"{THUMBNAILS}/{stamp}_{uuid.uuid4().hex[:8]}.jpg"
        ok, encoded = cv2.imencode(".jpg", thumbnail, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("cannot encode the face thumbnail")
        data = encoded.tobytes()
        if self.sealer is not None:
            sealed = self.sealer.seal(person, data)
            if sealed is None:
                log.info("not logging an event of person %s: no longer enrolled", person)
                return None
            data, relative = sealed, relative + SEALED
        event = DoorEvent(person, round(float(confidence), 4), now.isoformat(), track_id, relative)
        line = (json.dumps(event.line(), ensure_ascii=False) + "\n").encode("utf-8")
        with self._locked():
            write_bytes_atomic(self.directory / relative, data)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return DoorEvent(event.person_uid, event.confidence, event.time, track_id, relative, name)

    def read(self, names: Mapping[str, str] | None = None) -> list[DoorEvent]:
        """Every complete event, its ``name`` resolved from ``names`` (person id -> name:
        the people store's, or :func:`folder_names`); a torn last line (power cut
        mid-write) is skipped."""
        if not self.path.exists():
            return []
        events = []
        for raw in self.path.read_bytes().splitlines():
            line = _parse(raw)
            try:
                assert line is not None
                person = _who(line)
                events.append(
                    DoorEvent(
                        person,
                        float(line["confidence"]),
                        str(line["time"]),
                        int(line["track_id"]),
                        str(line["thumbnail"]),
                        (names or {}).get(person) or str(line.get("name", "")),
                    )
                )
            except (AssertionError, KeyError, TypeError, ValueError):
                log.warning("skipping a damaged line in %s", self.path)
        return events

    def thumbnail(self, event: DoorEvent) -> bytes:
        """The event's face thumbnail (JPEG bytes), unsealed when it is sealed."""
        path = self.directory / event.thumbnail
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read the thumbnail {path}: {error}") from error
        if not event.thumbnail.endswith(SEALED):
            return data
        if self.sealer is None:
            raise UserError(f"the thumbnail {path} is sealed: the people store's key is needed")
        return self.sealer.unseal(event.person_uid, data)

    # -- removal ---------------------------------------------------------------------

    def forget(self, person_uids: Collection[str] = (), name_digests: Collection[str] = ()) -> int:
        """Remove every event of these people and their thumbnails; how many. They are
        known by id, or by :func:`models.names.name_digest` (the erasure journal's) for
        lines written before ids were logged and for folder recognizers."""
        gone = set(person_uids) | {_by_digest(digest) for digest in name_digests}
        if not gone:
            return 0
        return self._rewrite(lambda line: _who(line) not in gone)

    def purge_expired(self, now: datetime | None = None) -> int:
        """Remove the events older than the retention period (none without one) and the
        orphaned thumbnails; how many events."""
        self._purged_at = time.time()
        if self.retention_days is None:
            return self._rewrite(lambda line: True)  # the orphans only
        limit = (now or datetime.now(UTC)) - timedelta(days=self.retention_days)

        def recent(line: Mapping[str, Any]) -> bool:
            try:
                return datetime.fromisoformat(str(line["time"])) >= limit
            except (KeyError, ValueError, TypeError):
                return False

        return self._rewrite(recent)

    def _rewrite(self, keep: Any) -> int:
        """Keep the lines ``keep`` accepts (a damaged line never is), remove every other
        line's thumbnail, and any thumbnail no line refers to once it is
        :data:`ORPHAN_AGE_S` old; the lines removed."""
        folder = self.directory / THUMBNAILS
        with self._locked():
            raw = self.path.read_bytes() if self.path.exists() else b""
            kept: list[bytes] = []
            used: set[str] = set()  # the thumbnails of the lines kept
            dropped: set[str] = set()  # of the lines removed
            removed = 0
            for text in raw.splitlines(keepends=True):
                line = _parse(text)
                thumbnail = Path(str((line or {}).get("thumbnail", ""))).name
                if line is not None and text.endswith(b"\n") and keep(line):
                    kept.append(text)
                    used.add(thumbnail)
                else:
                    dropped.add(thumbnail)
                    removed += 1
            if removed:
                write_bytes_atomic(self.path, b"".join(kept))
            orphaned = time.time() - ORPHAN_AGE_S
            for entry in folder.iterdir() if folder.is_dir() else ():
                if entry.name in used or entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if entry.name in dropped or entry.lstat().st_mtime < orphaned:
                        entry.unlink()
        if removed:
            log.info("removed %d door events from %s", removed, self.path)
        return removed


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
        who = event.person_uid or event.name
        last = self._last_fired.get(who)
        if last is not None and now - last < self.settings.cooldown_s:
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._fail(f"hooks are behind; dropped the hook for person {event.person_uid}")
            return False
        self._last_fired[who] = now
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
            "KIOSK_EVENT_PERSON_UID": event.person_uid,
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
