"""What the public door screen says (kiosk/ui/door_state.py), without Qt."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kiosk.live.pipeline import PAUSED_NOTICE
from kiosk.live.results import FrameResult, TrackState, TrackView
from kiosk.live.starter import STARTING as STARTING_NOTICE
from kiosk.ui.door_state import (
    HOLD,
    IDLE,
    NOT_RECOGNISED,
    PAUSED,
    STARTING,
    UNAVAILABLE,
    DoorState,
    answer_for,
)

FRAME = np.zeros((120, 160, 3), dtype=np.uint8)


def track(
    state: TrackState, label: str = "Unknown", size: float = 40.0, prompt: str = "", tid: int = 1
) -> TrackView:
    return TrackView(tid, (10.0, 10.0, 10.0 + size, 10.0 + size), label, 0.93, state, prompt=prompt)


def result(*tracks: TrackView, door_event_at: float = 0.0) -> FrameResult:
    return FrameResult(0, FRAME, 0.0, tuple(tracks), door_event_at=door_event_at)


def test_each_track_state_has_its_words() -> None:
    assert answer_for([]) == IDLE
    assert answer_for([track("pending")]) == HOLD
    assert answer_for([track("recognized", "Zoë")]).headline == "Welcome, Zoë"
    assert answer_for([track("unknown")]) == NOT_RECOGNISED
    # A face found not live is told what a stranger is told: no hint which check failed.
    assert answer_for([track("not_live")]) == NOT_RECOGNISED
    asked = answer_for([track("pending", prompt="Please come closer")])
    assert asked.kind == "hold" and asked.headline == "Please come closer"


def test_the_nearest_face_answers_and_every_recognized_one_is_welcomed() -> None:
    near_stranger = track("unknown", size=80, tid=1)
    far_pending = track("pending", size=20, tid=2)
    assert answer_for([far_pending, near_stranger]) == NOT_RECOGNISED
    assert answer_for([near_stranger, far_pending]) == NOT_RECOGNISED
    sam = track("recognized", "Sam", size=30, tid=3)
    zoe = track("recognized", "Zoë", size=60, tid=4)
    assert answer_for([near_stranger, sam]).headline == "Welcome, Sam"
    assert answer_for([sam, zoe]).headline == "Welcome, Zoë and Sam"  # nearest first
    ada = track("recognized", "Ada", size=10, tid=5)
    assert answer_for([sam, zoe, ada]).headline == "Welcome, Zoë, Sam and others"


@pytest.mark.parametrize("state", ["pending", "recognized", "unknown", "not_live"])
def test_no_number_ever_reaches_the_door(state: TrackState) -> None:
    answer = answer_for([track(state, "Zoë", prompt="Please turn your head slightly")])
    words = answer.headline + answer.detail
    assert not set(words) & set("0123456789%"), words


def test_the_source_and_the_start_are_said_in_plain_words() -> None:
    door = DoorState()
    assert door.update(None, "", 0.0) == STARTING
    assert door.update(None, STARTING_NOTICE, 0.0) == STARTING  # kiosk run's, loading
    assert door.update(None, "The kiosk cannot start: no model", 0.0) == UNAVAILABLE
    assert door.update(None, "no camera at index 0, retrying in 2 s", 0.0) == UNAVAILABLE
    seen = result(track("recognized", "Zoë"))
    assert door.update(seen, "camera 0 lost, reconnecting in 4 s", 1.0) == UNAVAILABLE
    assert door.update(seen, "no new frame for 3 s", 1.0) == UNAVAILABLE
    assert door.update(seen, PAUSED_NOTICE, 1.0) == PAUSED
    assert door.update(None, PAUSED_NOTICE, 1.0) == PAUSED


def test_a_missed_detection_does_not_flash_idle_and_a_welcome_lingers() -> None:
    door = DoorState(hold_s=1.0, welcome_hold_s=3.0)
    empty = result()
    assert door.update(result(track("pending")), "", 10.0) == HOLD
    assert door.update(empty, "", 10.5) == HOLD  # one frame without the face
    assert door.update(empty, "", 11.2) == IDLE  # gone for more than hold_s
    welcome = door.update(result(track("recognized", "Zoë")), "", 20.0)
    assert welcome.headline == "Welcome, Zoë"
    assert door.update(empty, "", 22.5) == welcome  # walked on: the welcome stays a moment
    assert door.update(empty, "", 23.1) == IDLE
    assert door.update(result(track("unknown")), "", 30.0) == NOT_RECOGNISED
    assert door.update(empty, "", 31.5) == IDLE


def test_the_door_is_open_while_its_event_is_fresh_and_chimes_once() -> None:
    door = DoorState(door_open_s=5.0)
    before = result(track("recognized", "Zoë"))
    assert not door.door_open(before, 100.0) and not door.new_door_event(before)
    opened = result(track("recognized", "Zoë"), door_event_at=100.0)
    assert door.door_open(opened, 100.1) and door.door_open(opened, 104.9)
    assert not door.door_open(opened, 105.0)
    assert door.new_door_event(opened)
    assert not door.new_door_event(replace(opened, frame_index=1))  # the same event again
    assert door.new_door_event(replace(opened, door_event_at=120.0))  # a new one
    assert not door.door_open(None, 100.0)
