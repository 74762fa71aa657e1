"""The door event log and its hooks, against a local script and a 127.0.0.1 HTTP server."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from kiosk.live.events import DoorEvent, DoorHooks, EventLog, HookSettings
from models.errors import UserError
from models.names import name_digest
from tests.helpers import stale_temp

THUMB = np.full((64, 48, 3), 128, np.uint8)


def uid_of(name: str) -> str:
    """A made-up store id (32 hex digits) for a name."""
    import hashlib

    return hashlib.md5(name.encode()).hexdigest()


def event(name: str = "ada") -> DoorEvent:
    return DoorEvent(uid_of(name), 0.93, "2026-01-01T00:00:00+00:00", 1, "thumbnails/x.jpg", name)


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_event_log_appends_events_with_thumbnails(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    first = log.append(uid_of("ada"), "ada", 0.912345, 3, THUMB)
    log.append(uid_of("bob"), "bob", 0.85, 4, THUMB)
    names = {uid_of(n): n for n in ("ada", "bob")}
    events = log.read(names)
    assert [e.name for e in events] == ["ada", "bob"]
    assert events[0] == first and first.confidence == 0.9123 and first.track_id == 3
    assert first.person_uid == uid_of("ada")
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [line["person_uid"] for line in lines] == [uid_of("ada"), uid_of("bob")]
    assert all("name" not in line for line in lines)  # ids only: names are shown from them
    thumbnail = cv2.imread(str(log.directory / first.thumbnail))
    assert thumbnail is not None and thumbnail.shape == THUMB.shape
    assert not list((log.directory / "thumbnails").glob(".tmp-*"))
    with log.path.open("a") as stream:  # a write torn by a power cut
        stream.write('{"person_uid": "car')
    assert [e.name for e in EventLog(tmp_path / "events").read(names)] == ["ada", "bob"]


def test_opening_the_log_removes_a_killed_runs_thumbnail_temp(tmp_path: Path) -> None:
    killed = stale_temp(tmp_path / "events" / "thumbnails", ".tmp-k1lled_0.jpg")
    kept = stale_temp(tmp_path / "events" / "thumbnails", "20240101T000000000000Z_ab.jpg")
    line = event().line() | {"thumbnail": f"thumbnails/{kept.name}"}  # an event's: kept
    (tmp_path / "events" / "events.jsonl").write_text(json.dumps(line) + "\n")
    EventLog(tmp_path / "events")
    assert not killed.exists() and kept.exists()


def test_unwritable_event_folder_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(UserError, match="cannot create the event log folder"):
        EventLog(blocker / "events")


def test_forget_removes_a_persons_events_and_thumbnails_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    log = EventLog(tmp_path / "events")
    ada = log.append(uid_of("ada"), "ada", 0.9, 1, THUMB)
    bob = log.append(uid_of("bob"), "bob", 0.9, 2, THUMB)
    folder = log.append("Carol", "Carol", 0.9, 3, THUMB)  # a folder gallery: by name digest
    assert ada is not None and bob is not None and folder is not None
    with log.path.open("ab") as stream:  # written before ids were logged: the name only
        stream.write(
            b'{"name": "Ada", "confidence": 0.8, "time": "2026-01-01T00:00:00+00:00",'
            b' "track_id": 9, "thumbnail": "thumbnails/old.jpg"}\n'
        )
    (log.directory / "thumbnails" / "old.jpg").write_bytes(b"jpeg")
    assert log.forget({uid_of("ada")}, {name_digest("ada")}) == 2
    assert log.forget((), {name_digest("carol")}) == 1
    assert [event.person_uid for event in log.read()] == [uid_of("bob")]
    assert sorted(p.name for p in (log.directory / "thumbnails").iterdir()) == [
        Path(bob.thumbnail).name
    ]
    assert b"Carol" not in log.path.read_bytes() and b"Ada" not in log.path.read_bytes()
    assert log.forget({uid_of("nobody")}) == 0


@pytest.mark.parametrize("retention_days", [None, 30])
def test_opening_the_log_sweeps_a_killed_appends_thumbnail_but_not_a_fresh_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retention_days: int | None
) -> None:
    """A kill between the thumbnail and its line leaves a thumbnail no event refers to:
    the next open removes it once it is ORPHAN_AGE_S old. A younger one may be a door's
    whose line comes a moment later (one that does not take the lock): it stays."""
    import os

    from kiosk.live import events as events_module

    log = EventLog(tmp_path / "events", retention_days=retention_days)
    bob = log.append(uid_of("bob"), "bob", 0.9, 1, THUMB)
    assert bob is not None

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # the process dies after the thumbnail, before its line

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(events_module.os, "write", killed)
        log.append(uid_of("ada"), "ada", 0.9, 2, THUMB)
    folder = log.directory / "thumbnails"
    [orphan] = [p for p in folder.iterdir() if p.name != Path(bob.thumbnail).name]
    EventLog(tmp_path / "events", retention_days=retention_days)  # too young yet: kept
    assert orphan.exists()
    old = time.time() - events_module.ORPHAN_AGE_S - 1
    os.utime(orphan, (old, old))
    os.utime(log.directory / bob.thumbnail, (old, old))  # an old event's: kept
    fresh = folder / "20990101T000000000000Z_0a1b2c3d.jpg"  # a door's, its line to come
    fresh.write_bytes(b"jpeg")
    EventLog(tmp_path / "events", retention_days=retention_days)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [Path(bob.thumbnail).name, fresh.name]
    )
    assert [event.person_uid for event in log.read()] == [uid_of("bob")]


def test_events_past_their_retention_go_with_their_thumbnails(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events", retention_days=30)
    old = log.append(uid_of("ada"), "ada", 0.9, 1, THUMB)
    new = log.append(uid_of("bob"), "bob", 0.9, 2, THUMB)
    assert old is not None and new is not None
    assert log.purge_expired(datetime.now(UTC) + timedelta(days=1)) == 0
    lines = log.path.read_text().splitlines()
    aged = json.loads(lines[0]) | {"time": (datetime.now(UTC) - timedelta(days=31)).isoformat()}
    log.path.write_text(json.dumps(aged) + "\n" + lines[1] + "\n")
    EventLog(tmp_path / "events", retention_days=30)  # opening the log purges
    assert [event.person_uid for event in log.read()] == [uid_of("bob")]
    assert not (log.directory / old.thumbnail).exists()
    assert (log.directory / new.thumbnail).exists()


class _Keys:
    """A sealer with one data key per person; a person without one was erased."""

    def __init__(self, *uids: str) -> None:
        from cryptography.fernet import Fernet

        self.keys = {uid: Fernet(Fernet.generate_key()) for uid in uids}

    def seal(self, uid: str, data: bytes) -> bytes | None:
        return self.keys[uid].encrypt(data) if uid in self.keys else None

    def unseal(self, uid: str, data: bytes) -> bytes:
        if uid not in self.keys:
            raise UserError(f"person {uid} was erased")
        return self.keys[uid].decrypt(data)


def test_thumbnails_are_sealed_with_the_persons_key_and_an_erased_person_is_not_logged(
    tmp_path: Path,
) -> None:
    keys = _Keys(uid_of("ada"))
    log = EventLog(tmp_path / "events", sealer=keys)
    event = log.append(uid_of("ada"), "ada", 0.9, 1, THUMB)
    assert event is not None and event.thumbnail.endswith(".jpg.sealed")
    sealed = (log.directory / event.thumbnail).read_bytes()
    assert not sealed.startswith(b"\xff\xd8")  # not a JPEG on disk
    picture = cv2.imdecode(np.frombuffer(log.thumbnail(event), np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape == THUMB.shape
    assert log.append(uid_of("bob"), "bob", 0.9, 2, THUMB) is None  # erased meanwhile
    assert [e.person_uid for e in log.read()] == [uid_of("ada")]
    assert len(list((log.directory / "thumbnails").iterdir())) == 1
    del keys.keys[uid_of("ada")]  # her data key destroyed: the file is noise
    with pytest.raises(UserError, match="erased"):
        log.thumbnail(event)
    with pytest.raises(UserError, match="sealed"):
        EventLog(tmp_path / "events").thumbnail(event)


def script(tmp_path: Path, body: str) -> tuple[str, ...]:
    path = tmp_path / "hook.py"
    path.write_text(body)
    return (sys.executable, str(path))


def test_command_hook_gets_the_event_and_respects_the_cooldown(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    command = script(
        tmp_path,
        "import os, sys\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(sys.stdin.read().strip() + ' ' + os.environ['KIOSK_EVENT_NAME'] + '\\n')\n",
    )
    hooks = DoorHooks(HookSettings(command=command, cooldown_s=60.0))
    hooks.start()
    assert hooks.submit(event("ada"))
    assert not hooks.submit(event("ada"))  # cooling down
    assert hooks.submit(event("bob"))
    hooks.stop()
    lines = out.read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["ada", "bob"]
    assert json.loads(lines[0].rsplit(" ", 1)[0])["confidence"] == 0.93
    assert hooks.failures == 0 and hooks.completed == 2


class _Door(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Door.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet: the test asserts on what the door received instead."""


@pytest.fixture
def door_url() -> Iterator[str]:
    _Door.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Door)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/door"
    server.shutdown()
    thread.join()
    server.server_close()


def test_http_hook_posts_the_event(door_url: str) -> None:
    hooks = DoorHooks(HookSettings(url=door_url, cooldown_s=0.0))
    hooks.start()
    hooks.submit(event("ada"))
    hooks.stop()
    assert _Door.received == [
        {
            "person_uid": uid_of("ada"),
            "confidence": 0.93,
            "time": "2026-01-01T00:00:00+00:00",
            "track_id": 1,
            "thumbnail": "thumbnails/x.jpg",
            "name": "ada",  # the door controller's interface has the name; the log has not
        }
    ]
    assert hooks.failures == 0


def test_failing_and_slow_hooks_are_logged_and_never_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slow = script(tmp_path, "import sys, time\ntime.sleep(5)\nsys.exit(3)\n")
    hooks = DoorHooks(
        HookSettings(command=slow, url="http://127.0.0.1:9/closed", timeout_s=0.3, cooldown_s=0),
        max_pending=2,
    )
    hooks.start()
    started = time.monotonic()
    submitted = [hooks.submit(event(f"p{i}")) for i in range(6)]
    assert time.monotonic() - started < 0.1  # the caller never waits for a hook
    assert submitted[:2] == [True, True] and not all(submitted)  # full queue: dropped
    wait_for(lambda: hooks.completed == submitted.count(True))
    hooks.stop()
    assert "timed out" in caplog.text and "POST to http://127.0.0.1:9/closed failed" in caplog.text
    assert hooks.failures >= 2 * submitted.count(True)


def test_stop_can_drop_a_backlog_of_slow_hooks(tmp_path: Path) -> None:
    slow = script(tmp_path, "import time\ntime.sleep(0.5)\n")
    hooks = DoorHooks(HookSettings(command=slow, cooldown_s=0))
    hooks.start()
    for i in range(5):
        hooks.submit(event(f"p{i}"))
    time.sleep(0.1)  # the first hook is running
    started = time.monotonic()
    hooks.stop(discard_pending=True)
    assert time.monotonic() - started < 1.5  # one hook awaited, not five
    assert hooks.completed == 1


def test_failing_command_exit_status_is_reported(tmp_path: Path) -> None:
    failing = script(tmp_path, "import sys\nprint('door jammed', file=sys.stderr)\nsys.exit(1)\n")
    hooks = DoorHooks(HookSettings(command=failing))
    hooks.start()
    hooks.submit(event())
    hooks.stop()
    assert hooks.failures == 1 and "exited 1: door jammed" in hooks.last_error
