"""Door events of a site kiosk, pushed by person id from the kiosk's own event log.

The local log (``events.jsonl``, kiosk/live/events.py) stays the record: each event is
fsynced there before the door hook runs. The sync worker reads the log from the byte
offset it has pushed up to (kept in the site state) and pushes each complete line with
a key derived from the line's content (kiosk, time, track, name). A push interrupted at
any point is repeated with the same keys, which the registry ignores if it has them
already: no event is lost (the log is fsynced first) and none is stored twice. The face
thumbnail stays on the kiosk; the registry gets the person's id, not the name.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.live.events import EVENT_LOG

MAX_LINES = 500  # pushed per batch


@dataclass(frozen=True)
class EventBatch:
    events: list[dict[str, Any]]
    end: int  # the byte offset after the last complete line read
    identity: str  # the log file's identity (device, inode): a new file starts at 0


def file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_dev}:{stat.st_ino}"


def event_key(kiosk_id: str, line: dict[str, Any]) -> str:
    who = line.get("person_uid") or line.get("uid") or line.get("name") or ""
    name = f"{kiosk_id}|{line.get('time')}|{line.get('track_id')}|{who}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def read_events(
    directory: Path,
    offset: int,
    identity: str | None,
    kiosk_id: str,
    uid_of: Callable[[str], str | None],
) -> EventBatch | None:
    """The next complete lines of the log after ``offset`` (None when there is no log)."""
    path = directory / EVENT_LOG
    try:
        current = file_identity(path)
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if current != identity or size < offset:
        offset = 0  # a new or truncated log: its lines are read from the start
    events: list[dict[str, Any]] = []
    with open(path, "rb") as handle:
        handle.seek(offset)
        end = offset
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # a line still being written (or torn by a power cut): not yet
            end += len(raw)
            try:
                line = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a damaged line, skipped as EventLog.read skips it
            if not isinstance(line, dict):
                continue
            name = line.get("name")
            person = line.get("person_uid") or line.get("uid")
            if person is None and isinstance(name, str):
                person = uid_of(name)
            events.append(
                {
                    "key": event_key(kiosk_id, line),
                    "person_uid": person,
                    "confidence": float(line.get("confidence", 0.0)),
                    "time": line.get("time"),
                    "track_id": int(line.get("track_id", 0)),
                }
            )
            if len(events) >= MAX_LINES:
                break
    return EventBatch(events, end, current)


def log_size(directory: Path) -> int:
    try:
        return os.stat(directory / EVENT_LOG).st_size
    except FileNotFoundError:
        return 0
