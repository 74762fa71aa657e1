"""What the public door screen says, decided from the newest result alone (no Qt).

The person at the door gets words, never numbers: no confidence, timing or provider
(those are the operator view's, behind the PIN). One answer at a time, for the faces in
view:

- nobody in view: ``idle``, "Please look at the camera";
- a recognized (and, with liveness on, live) face: ``welcome``, "Welcome, Zoë";
- the vote or liveness still undecided: ``hold``, "Hold still…", or the liveness check's
  own request ("Please turn your head slightly to one side") when it has one;
- a stranger, and also a face found **not live**: ``not_recognised``, "Not recognised",
  "Please see reception". A photo held up is told exactly what a stranger is told: the
  screen must not tell an attacker which check failed (an oracle to tune a print or a
  screen against), and a real person misjudged not live is sent to a person who can help;
  "Please look at the camera" would invite them to keep trying at a door that will not
  open. The operator view still shows "not live" in orange.

A detection missed for a frame or two does not flash the idle screen (``hold_s``), and a
welcome stays a moment after the person has walked on (``welcome_hold_s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kiosk.live.pipeline import PAUSED_NOTICE
from kiosk.live.results import FrameResult, TrackView
from kiosk.live.starter import STARTING as STARTING_NOTICE

AnswerKind = Literal[
    "starting", "idle", "hold", "welcome", "not_recognised", "paused", "unavailable"
]


@dataclass(frozen=True)
class DoorAnswer:
    kind: AnswerKind
    headline: str
    detail: str = ""


STARTING = DoorAnswer("starting", "Starting…", "One moment, please")
IDLE = DoorAnswer("idle", "Please look at the camera")
HOLD = DoorAnswer("hold", "Hold still…")
NOT_RECOGNISED = DoorAnswer("not_recognised", "Not recognised", "Please see reception")
PAUSED = DoorAnswer("paused", "Back in a moment", "An enrollment is in progress")
UNAVAILABLE = DoorAnswer(
    "unavailable", "Please see reception", "The door camera is not working right now"
)


def _area(track: TrackView) -> float:
    x1, y1, x2, y2 = track.box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def welcome_text(names: Sequence[str]) -> str:
    """ "Welcome, Zoë"; two names joined by "and"; more than two: the first two "and others"."""
    if len(names) == 1:
        return f"Welcome, {names[0]}"
    if len(names) == 2:
        return f"Welcome, {names[0]} and {names[1]}"
    return f"Welcome, {names[0]}, {names[1]} and others"


def answer_for(tracks: Sequence[TrackView]) -> DoorAnswer:
    """The answer for the faces of one frame (nearest first), without any holding."""
    if not tracks:
        return IDLE
    nearest = sorted(tracks, key=_area, reverse=True)
    named = list(dict.fromkeys(t.label for t in nearest if t.state == "recognized"))
    if named:
        return DoorAnswer("welcome", welcome_text(named))
    first = nearest[0]
    if first.state == "pending":
        return DoorAnswer("hold", first.prompt) if first.prompt else HOLD
    return NOT_RECOGNISED  # "unknown" and "not_live" alike: see the module's docstring


class DoorState:
    """Turns each poll's newest result and notice into the screen's answer, and says
    whether the door is open (a door event for a recognized person in the last
    ``door_open_s``) and when a new door event arrived (for the chime)."""

    def __init__(
        self, *, door_open_s: float = 5.0, hold_s: float = 1.0, welcome_hold_s: float = 3.0
    ) -> None:
        self.door_open_s = door_open_s
        self.hold_s = hold_s
        self.welcome_hold_s = welcome_hold_s
        self.answer = STARTING
        self._faces_seen_at = -1e18  # when the shown face answer was last confirmed
        self._last_event_at = 0.0

    def update(self, result: FrameResult | None, notice: str, now: float) -> DoorAnswer:
        """``notice`` is the window's: the source's trouble, or "no new frame for N s"."""
        self.answer = self._decide(result, notice, now)
        return self.answer

    def _decide(self, result: FrameResult | None, notice: str, now: float) -> DoorAnswer:
        if notice == PAUSED_NOTICE:
            return PAUSED
        if result is None:
            return STARTING if notice in ("", STARTING_NOTICE) else UNAVAILABLE
        if notice:
            return UNAVAILABLE  # the camera is lost or the picture froze: faces are stale
        answer = answer_for(result.tracks)
        if answer.kind != "idle":
            self._faces_seen_at = now
            return answer
        held = self.welcome_hold_s if self.answer.kind == "welcome" else self.hold_s
        recent = now - self._faces_seen_at < held
        if recent and self.answer.kind in ("welcome", "hold", "not_recognised"):
            return self.answer
        return IDLE

    def door_open(self, result: FrameResult | None, now: float) -> bool:
        if result is None or result.door_event_at <= 0:
            return False
        return now - result.door_event_at < self.door_open_s

    def new_door_event(self, result: FrameResult | None) -> bool:
        """True once for each door event, on the first result that carries it."""
        if result is None or result.door_event_at <= self._last_event_at:
            return False
        self._last_event_at = result.door_event_at
        return True
